"""The model card's pictures: drawn when a version's card is written, valid PNGs, served as a page under the
review page's CSP to reviewers and admins only."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from ctax.api.app import create_app
from ctax.labelling.calibration import curves
from ctax.pictures.figures import draw_all
from ctax.store.models import ModelVersion
from ctax.worker.runtime import Runtime
from tests.conftest import headers

CARD_PICTURES = ("fit.png", "wrong_label.png", "precision_recall.png", "per_label.png")


def assert_png(data: bytes, min_size: tuple[int, int] = (400, 250)) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.verify()  # a truncated or corrupt file raises here
    assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]


def test_a_calibrated_version_has_its_pictures_and_a_card_page(calibrated: Runtime, keys) -> None:
    directory = Path(calibrated.settings.model_dir) / "v1-pretrained"
    card = directory / "card"
    for name in CARD_PICTURES:
        assert_png((card / name).read_bytes())
    assert not (card / "loss.png").exists()  # a pretrained version was never trained
    manifest = json.loads((card / "card.json").read_text())
    assert [p["file"] for p in manifest["pictures"]] == list(CARD_PICTURES)
    assert any("No training loss curve" in note for note in manifest["notes"])
    with calibrated.db.read() as session:
        version = session.get(ModelVersion, "v1-pretrained")
        figures, thresholds = version.metrics["calibration"]["figures"], version.thresholds
    # The pictures show the thresholds the version uses, and every validation creative.
    # The pretrained version calibrates on a share of the 90 stored creatives held apart from its exemplars.
    n_known = figures["new_label"]["n_known"]
    assert figures["new_label"]["threshold"] == thresholds["new_label"] and 0 < n_known < 90
    assert figures["wrong_label"]["threshold"] == thresholds["wrong_label"]
    assert sum(row["n"] for row in figures["per_label"]) == n_known and len(figures["per_label"]) == 6
    assert "![Per-label accuracy](card/per_label.png)" in (directory / "MODEL_CARD.md").read_text()

    with TestClient(create_app(calibrated.settings, start_dispatcher=False)) as client:
        page = client.get("/v1/models/v1-pretrained/card", headers=headers(keys["reviewer"]))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        sources = re.findall(r'src="data:image/png;base64,([^"]+)"', page.text)
        assert len(sources) == len(CARD_PICTURES)
        for source in sources:
            assert_png(base64.b64decode(source))
        assert "No training loss curve" in page.text and "new_label" in page.text
        assert client.get("/v1/models/v1-pretrained/card", headers=headers(keys["admin"])).status_code == 200
        assert client.get("/v1/models/v1-pretrained/card").status_code == 401
        assert client.get("/v1/models/v1-pretrained/card", headers=headers(keys["poster"])).status_code == 403
        missing = client.get("/v1/models/v99-nothing/card", headers=headers(keys["reviewer"]))
        assert missing.status_code == 404 and "v99-nothing" in missing.json()["message"]


def test_the_calibration_summary_draws_every_figure_and_the_loss_curve(tmp_path: Path) -> None:
    rng = __import__("numpy").random.default_rng(0)
    known, novel = rng.normal(1.0, 0.3, 200), rng.normal(-1.0, 0.4, 200)
    figures = {
        "new_label": curves.novelty_figure(known, novel, 0.4, 0.1),
        "wrong_label": curves.wrong_label_figure(rng.uniform(0, 0.1, 200), rng.uniform(0.05, 1, 600), 0.12, 0.2),
        "per_label": curves.per_label_accuracy([1, 1, 2, 2, 2], [1, 2, 2, 2, None], {1: "A/B", 2: "A/C"}),
    }
    # Fewer novel creatives flagged as the threshold falls: the curve runs from high recall to high precision.
    curve = figures["new_label"]["curve"]
    assert curve["recall"][0] >= curve["recall"][-1] and max(curve["precision"]) == 1.0
    assert figures["per_label"][0] == {"label_id": 1, "label": "A/B", "n": 2, "correct": 1, "accuracy": 0.5}
    loss = [{"step": s, "loss": 2.0 / (1 + s)} for s in range(1, 30)]
    pictures, notes = draw_all(figures, loss, tmp_path, "simulated new-label creatives")
    assert [p.file for p in pictures] == [*CARD_PICTURES, "loss.png"] and notes == []
    for picture in pictures:
        assert_png((tmp_path / picture.file).read_bytes(), (300, 200))

    pictures, notes = draw_all(None, None, tmp_path / "empty", "none")
    assert pictures == [] and len(notes) == 2  # nothing to draw is said, not drawn empty
