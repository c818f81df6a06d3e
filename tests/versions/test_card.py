"""The model card says what calibration chose, the OCR-read creatives' thresholds included."""

from __future__ import annotations

from ctax.store.models import ModelVersion
from ctax.versions.card import write_model_card


def test_the_card_shows_the_thresholds_of_ocr_read_creatives(tmp_path) -> None:
    calibration = {"new_label": {"threshold": 0.1, "precision": 0.7, "recall": 0.9, "auroc": 0.95},
                   "ocr": {"n_validation": 300, "top1": 0.61, "method": "OCR-like readings",
                           "new_label": {"threshold": -1.2345, "recall": 0.5, "auroc": 0.8},
                           "wrong_label": {"threshold": 0.0789, "auroc": 0.9}}}
    version = ModelVersion(id="v1-pretrained", kind="pretrained", status="active", artefact_dir=str(tmp_path),
                           config={}, metrics={"calibration": calibration},
                           thresholds={"new_label": 0.1, "ocr_new_label": -1.2345, "ocr_wrong_label": 0.0789})
    card = write_model_card(version).read_text()
    line = next(line for line in card.splitlines() if "read by OCR" in line)
    assert "-1.2345" in line and "0.0789" in line and "300" in line
    assert '"ocr_new_label": -1.2345' in card  # the stored thresholds, as served
