"""The model card says what calibration chose, the OCR-read creatives' thresholds included."""

from __future__ import annotations

from ctax.store.models import ModelVersion
from ctax.versions.card import write_model_card


def test_the_card_shows_the_thresholds_of_ocr_read_creatives(tmp_path) -> None:
    calibration = {"new_label": {"threshold": 0.1, "precision": 0.7, "recall": 0.9, "auroc": 0.95},
                   "ocr": {"n_validation": 300, "top1": 0.61, "method": "OCR-like readings",
                           "new_label": {"threshold": -1.2345, "recall": 0.5, "auroc": 0.8, "scorer": {
                               "chosen": "learned", "shared_auroc": 0.7123, "learned_cv_auroc": 0.7456}},
                           "wrong_label": {"threshold": 0.0789, "auroc": 0.9}}}
    version = ModelVersion(id="v1-pretrained", kind="pretrained", status="active", artefact_dir=str(tmp_path),
                           config={}, metrics={"calibration": calibration},
                           thresholds={"new_label": 0.1, "ocr_new_label": -1.2345, "ocr_wrong_label": 0.0789})
    card = write_model_card(version).read_text()
    line = next(line for line in card.splitlines() if "read by OCR" in line)
    assert "-1.2345" in line and "0.0789" in line and "300" in line
    assert '"ocr_new_label": -1.2345' in card  # the stored thresholds, as served
    scorer = next(line for line in card.splitlines() if "OCR-read creatives' novelty score" in line)
    assert "their own" in scorer and "0.7456" in scorer and "0.7123" in scorer


def test_the_card_says_what_share_of_known_creatives_the_new_label_threshold_promises(tmp_path) -> None:
    def card(confidence: float) -> str:
        calibration = {"n_validation": 716, "new_label": {
            "threshold": -1.1, "precision": 0.8, "recall": 0.83, "auroc": 0.95, "target_known_rate": 0.03,
            "rate_confidence": confidence, "known_pass_rate": 0.979}}
        version = ModelVersion(id="v2-trained", kind="trained", status="active", artefact_dir=str(tmp_path),
                               config={}, metrics={"calibration": calibration}, thresholds={"new_label": -1.1})
        return next(line for line in write_model_card(version).read_text().splitlines() if "review load" in line)

    assert "at most 3% of known-label creatives" in card(0.9)
    assert "vouched for at 90% confidence from 716 validation creatives" in card(0.9) and "2.1% of them" in card(0.9)
    assert "the plain validation quantile" in card(0.0)
