"""The model card page and the /map page in real headless Chromium, served by the real API over HTTP: the card
shows its pictures; the map draws every label and recent creative, hovering shows a creative's text and thumbnail,
the colours switch from decided label to flag, and clicking a flagged creative opens it in the review page. No
console errors and no CSP violations on the way. Screenshots go to /tmp/shots16 for a person to look at."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctax.api.app import create_app
from ctax.creatives.intake import CreativeSubmission, create_creative
from ctax.jobs import INDEX_QUEUE, LABEL_QUEUE
from ctax.pictures.map import refresh_map
from ctax.worker.runtime import Runtime
from ctax.worker.tasks.label import run as label_run
from tests.conftest import png_bytes
from tests.pictures.conftest import LABELS, seed_labelled
from tests.support import free_port

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SHOTS = Path("/tmp/shots16")
WRONG = "Product/Vehicles/Cars"


@pytest.fixture
def served(settings, db, pitt_labels, shared_data, keys) -> Iterator[dict[str, Any]]:
    """A calibrated pretrained version, 24 creatives labelled (some asserted wrongly, one with an image), the map
    drawn by the index owner; then the API alone, over HTTP."""
    seed_labelled(db, shared_data, pitt_labels, LABELS, 15)
    rt = Runtime(settings, [LABEL_QUEUE, INDEX_QUEUE], owns_index=True)
    rt.start()
    rows = [json.loads(line) for line in (shared_data / "pitt_ads_dev.jsonl").open()][-400:]
    picked = [row for row in rows if row["label"] in LABELS][:24]
    with rt.db.write() as session:
        subs = [CreativeSubmission(texts=row["texts"][:1], asserted_label=WRONG if n % 4 == 1 else None)
                for n, row in enumerate(picked)]
        subs[0] = CreativeSubmission(texts=picked[0]["texts"][:1], image=png_bytes("SUMMER SALE"))
        ids = [create_creative(session, rt.blobs, settings, sub, None)[0].id for sub in subs]
    assert label_run(rt, ids)["labelled"] == len(ids)
    drawn = refresh_map(rt.db, rt.index, rt.settings)
    rt.stop()
    rt.index.client.close()

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, start_dispatcher=False), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "map": drawn, "ids": ids, "key": keys["reviewer"]}
    server.should_exit = True
    thread.join(timeout=10)


def _watch(page: Any) -> list[str]:
    """Console errors (CSP violations are reported there) and uncaught exceptions."""
    problems: list[str] = []
    def on_console(msg: Any) -> None:
        # No worker answers search here: the review page's similar panel gets its 503 and says so (tested in
        # test_review_browser.py); the browser still logs the failed request.
        if msg.type == "error" and "/v1/search" not in (msg.location or {}).get("url", ""):
            problems.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def test_the_card_and_map_pages_in_chromium(served, browser) -> None:
    """One service for both pages: preparing it (towers, calibration, UMAP) is most of the time."""
    SHOTS.mkdir(exist_ok=True)
    card_page_shows_its_pictures(served, browser)
    map_draws_hovers_recolours_and_opens_the_review_page(served, browser)


def card_page_shows_its_pictures(served: dict[str, Any], browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900},
                                  extra_http_headers={"X-API-Key": served["key"]})
    page = context.new_page()
    problems = _watch(page)
    page.goto(f"{served['url']}/v1/models/v1-pretrained/card")
    page.wait_for_selector("img[data-figure]")
    widths = page.eval_on_selector_all("img[data-figure]", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert len(widths) == 4 and all(w > 400 for w in widths)
    assert page.text_content("#card-title") == "v1-pretrained"
    assert "No training loss curve" in page.text_content("main")
    page.screenshot(path=str(SHOTS / "card.png"), full_page=True)
    assert problems == []
    context.close()


def map_draws_hovers_recolours_and_opens_the_review_page(served: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    data = served["map"]
    assert data["method"] == "umap"  # 24 creatives and the Pitt taxonomy are enough for UMAP
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    problems = _watch(page)
    page.goto(f"{served['url']}/map")
    page.fill("#signin-key", served["key"])
    page.press("#signin-key", "Enter")
    expect(page.locator("#creatives circle")).to_have_count(len(data["creatives"]))
    assert page.locator("#labels rect").count() == len(data["labels"])
    assert data["version"] in page.text_content("#map-status")

    # Hover the creative with an image: its text and its thumbnail (fetched with the key, shown as a blob URL).
    with_image = next(n for n, p in enumerate(data["creatives"]) if p["has_image"])
    page.hover(f"#creatives circle[data-index='{with_image}']", force=True)
    page.wait_for_selector("#tooltip img")
    assert data["creatives"][with_image]["text"][:40] in page.text_content("#tooltip")
    page.screenshot(path=str(SHOTS / "map.png"))

    flagged = next(n for n, p in enumerate(data["creatives"]) if p["flag"] == "wrong_label")
    circle = f"#creatives circle[data-index='{flagged}']"
    by_label = page.get_attribute(circle, "fill")
    page.click("#by-flag")
    assert page.get_attribute("#by-flag", "aria-pressed") == "true"
    assert page.get_attribute(circle, "fill") == "#c2410c" != by_label
    assert "Wrong label" in page.text_content("#legend")
    page.hover(circle, force=True)
    page.screenshot(path=str(SHOTS / "map_flags.png"))

    page.click(circle, force=True)
    item = data["creatives"][flagged]["review_item_id"]
    page.wait_for_url(f"**/review#item={item}")
    expect(page.locator("#main")).to_contain_text(data["creatives"][flagged]["text"][:30])
    page.screenshot(path=str(SHOTS / "review_from_map.png"))
    assert problems == []
    context.close()
