"""`ctax eval`, the evaluation contract, on a small split through the CLI: held-out labels stay out of the
taxonomy and the training data, and a folder holding an earlier evaluation is refused rather than reused."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from ctax.cli import app
from tests.support import EVAL_ENV, EVAL_LABELS, write_split

pytestmark = pytest.mark.slow  # trains towers: `make test-fast` leaves it out

def test_ctax_eval_holds_labels_out_and_refuses_a_used_work_folder(tmp_path, shared_data) -> None:
    train, test, train_rows = write_split(shared_data, tmp_path)
    work, out, report = tmp_path / "work", tmp_path / "metrics.json", tmp_path / "report"
    args = ["eval", "--taxonomy", str(shared_data / "pitt_ads_taxonomy.txt"), "--train", str(train),
            "--test", str(test), "--holdout-labels", "1", "--no-train", "--json", str(out), "--work-dir", str(work),
            "--report", str(report)]
    result = CliRunner().invoke(app, args, env=EVAL_ENV)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    (held,) = metrics["held_out_labels"]
    assert held in EVAL_LABELS
    assert metrics["n_train"] == sum(row["label"] != held for row in train_rows)  # its rows were not imported
    assert metrics["n_test"] == 30 and metrics["model_version"] == "v1-pretrained"
    for key in ("top1", "top5", "novelty_auroc", "wrong_label_auroc"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["top1"] <= metrics["top5"]

    # --report: the evaluation's pictures, measured on the held-out label's creatives, on one page.
    for name in ("fit.png", "wrong_label.png", "precision_recall.png", "per_label.png"):
        image = Image.open(report / name)
        assert image.format == "PNG" and image.size[0] > 400
        image.verify()
    page = (report / "index.html").read_text()
    assert all(f'src="{name}"' in page for name in ("fit.png", "per_label.png")) and held in page
    assert "No training loss curve" in page  # --no-train
    figures = metrics["figures"]
    assert figures["new_label"]["n_novel"] == metrics["n_novel_test"] and figures["new_label"]["n_known"] == 30 - \
        metrics["n_novel_test"]
    assert figures["wrong_label"]["point"]["recall"] == metrics["wrong_label_recall"]

    again = CliRunner().invoke(app, args, env=EVAL_ENV)
    assert again.exit_code == 2
    assert "not empty" in again.output and str(work) in again.output.replace("\n", "")


def test_ctax_eval_prints_training_progress_and_records_arrival_and_per_label_figures(tmp_path, shared_data) -> None:
    train, test, _ = write_split(shared_data, tmp_path, per_label=20)
    out = tmp_path / "metrics.json"
    ocr = tmp_path / "ocr.jsonl"
    ocr.write_text("".join(line for _, line in zip(range(8), (shared_data / "pitt_ads_ocr_dev.jsonl").open(),
                                                   strict=False)))
    args = ["eval", "--taxonomy", str(shared_data / "pitt_ads_taxonomy.txt"), "--train", str(train),
            "--test", str(test), "--holdout-labels", "1", "--epochs", "1", "--json", str(out),
            "--ocr-test", str(ocr)]
    env = {**EVAL_ENV, "CTAX_TRAIN_BATCH_SIZE": "8"}
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    # Off a terminal the training's progress comes as lines: the phase, its step, the loss and the time left.
    assert "training" in result.output and "text tower step" in result.output and "loss" in result.output
    metrics = json.loads(out.read_text())
    assert metrics["trained"] and metrics["model_version"] == "v2-trained"
    (held,) = metrics["held_out_labels"]
    arrival = metrics["at_arrival"]
    for figures, block in ((metrics, metrics["by_held_out_label"]), (arrival, arrival["by_held_out_label"])):
        assert set(block) == {held}
        mine = block[held]
        # One held-out label: its AUROC against the known creatives is the stream's novelty AUROC.
        assert mine["novelty_auroc"] == pytest.approx(figures["novelty_auroc"])
        assert mine["n"] == metrics["n_novel_test"]
        assert mine["seen_before_first_flag"] is None or 0 <= mine["seen_before_first_flag"] < mine["n"]
        flagged_known = figures["known_flagged_new_rate"] * metrics["n_known_test"]
        assert flagged_known == pytest.approx(round(flagged_known))
        assert round(flagged_known) + round(mine["flagged_new_rate"] * mine["n"]) == figures["flags"].get(
            "new_label", 0)
    # The sweep only ever raises flags: no fewer known creatives flagged after it than at arrival.
    assert metrics["known_flagged_new_rate"] >= arrival["known_flagged_new_rate"]
    # The OCR rows, labelled as image ads read by OCR, are reported apart, judged by the version's OCR thresholds.
    block = metrics["ocr"]
    assert block["n"] + block["left_out_in_train"] == 8 and block["n"] > 0
    assert block["thresholds"]["ocr_new_label"] is not None and 0 <= block["known_flagged_new_rate"] <= 1
    assert block["novelty_score"] == ("ocr" if metrics["thresholds"].get("ocr_novelty_model") else "shared")
    assert "ocr known_flagged_new_rate" in result.output


def test_a_bad_ocr_test_line_is_refused_naming_it(tmp_path) -> None:
    from ctax.errors import InvalidInput
    from ctax.evaluation.run import read_ocr_rows

    ocr = tmp_path / "ocr.jsonl"
    ocr.write_text(json.dumps({"id": "1", "text": "COCA-COLA", "label": "Product/Food and Drink/Soft Drinks"}) + "\n"
                   + json.dumps({"id": "2", "text": "  ", "label": "PSA/Animal Rights"}) + "\n")
    with pytest.raises(InvalidInput, match=r"ocr\.jsonl line 2"):
        read_ocr_rows(ocr)
    ocr.write_text(json.dumps({"id": "1", "label": "PSA/Animal Rights"}) + "\n")
    with pytest.raises(InvalidInput, match="line 1"):
        read_ocr_rows(ocr)


def test_held_out_labels_given_by_the_caller_are_the_ones_held_out(tmp_path, shared_data) -> None:
    """bench.arrival passes the split's held-out labels: a stream's own counts (a trickle thins the held-out
    labels' creatives) must not make the evaluation hold out others."""
    from ctax.config import Settings
    from ctax.errors import InvalidInput
    from ctax.evaluation.run import EvalOptions, _split

    train, test, _ = write_split(shared_data, tmp_path)
    taxonomy = shared_data / "pitt_ads_taxonomy.txt"
    given = EvalOptions(taxonomy, train, test, holdout_labels=1, held_out=("Product/Food and Drink/Soft Drinks",))
    data = _split(given, Settings())
    assert [str(p) for p in data.held_out] == ["Product/Food and Drink/Soft Drinks"]
    assert all(str(row.label) != "Product/Food and Drink/Soft Drinks" for row in data.train)
    assert "Product/Food and Drink/Soft Drinks" not in {str(item.path) for item in data.labels.labels}
    with pytest.raises(InvalidInput, match="Product/No Such Label"):
        _split(EvalOptions(taxonomy, train, test, held_out=("Product/No Such Label",)), Settings())
