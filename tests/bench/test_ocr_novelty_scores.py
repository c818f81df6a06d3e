"""bench.ocr_novelty_scores on a tiny trained evaluation: the OCR creatives scored by each score, and the
version calibrated again by this checkout, which made the folder, giving back the stored thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ocr_novelty_scores import compare
from ctax.evaluation.run import EvalOptions, run_eval
from tests.support import EVAL_ENV, write_split

pytestmark = pytest.mark.slow  # trains towers: `make test-fast` leaves it out


def test_recalibrating_a_trained_evaluation_gives_back_its_thresholds_and_flagged_rates(
        tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**EVAL_ENV, "CTAX_TRAIN_BATCH_SIZE": "8"}.items():
        monkeypatch.setenv(name, value)
    train, test, _ = write_split(shared_data, tmp_path, per_label=20)
    ocr = tmp_path / "ocr.jsonl"
    ocr.write_text("".join(line for _, line in zip(range(12), (shared_data / "pitt_ads_ocr_dev.jsonl").open(),
                                                   strict=False)))
    work = tmp_path / "work"
    metrics = run_eval(EvalOptions(shared_data / "pitt_ads_taxonomy.txt", train, test, holdout_labels=1, epochs=1,
                                   work_dir=work, ocr_test=ocr))
    rows = {(row["score"], row["traffic"]): row for row in compare(work, ocr, 5000, recalibrate=True)}
    own = next(row for (score, traffic), row in rows.items()
               if score.startswith("their own") and traffic == "final window")
    again = rows[("recalibrated (this checkout)", "final window")]
    # The same code on the same towers and split sets the same OCR threshold and scores alike.
    assert own["ocr_new_label"] == pytest.approx(metrics["ocr"]["thresholds"]["ocr_new_label"])
    assert again["ocr_new_label"] == pytest.approx(own["ocr_new_label"])
    assert again["novelty_auroc"] == pytest.approx(own["novelty_auroc"])
    assert again["known_flagged_new_rate"] == pytest.approx(own["known_flagged_new_rate"])
    assert 0 <= own["known_flagged_new_rate"] <= 1 and own["n"] == metrics["ocr"]["n"]
    # The shared score was not what the OCR threshold was set on: no flagged rates are claimed for it.
    assert rows[("shared", "final window")]["known_flagged_new_rate"] is None
    assert {traffic for _, traffic in rows} == {"final window", "none"}
