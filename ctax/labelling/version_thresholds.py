"""A model version's thresholds and weights: what the trigger (trigger.py) decides by, set per version by
calibration (calibration/thresholds.py) and stored with it (thresholds.json)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ctax.labelling.novelty import VARIANT_SIMILARITY

# Where a creative's text came from: supplied with it, or read from its image by OCR.
TEXT = "text"
OCR = "ocr"


@dataclass(frozen=True)
class Thresholds:
    # Uncalibrated defaults: 0.2 is about the 5th percentile of pretrained MiniLM's best-label cosine on Pitt ads
    # with the default label template (95% of known creatives fit), as calibration would set it.
    new_label: float = 0.2
    wrong_label: float = 0.12
    per_label_wrong: Mapping[int, float] = field(default_factory=dict)
    margin: float = 0.01
    exemplar_weight: float = 0.0
    exemplar_fit_weight: float = 0.0
    novelty_model: Mapping[str, Any] | None = None
    # The traffic window calibration simulated (validation creatives less one); see novelty.traffic_k.
    traffic_reference: int = 0
    # For creatives whose text was read by OCR (Evidence.text_source "ocr"): calibrated on OCR-like readings of the
    # validation creatives (ocr_noise.py), since OCR text sits further from every label than supplied text does.
    # None (a version calibrated before, or without labelled data): the supplied-text thresholds serve both.
    ocr_new_label: float | None = None
    ocr_wrong_label: float | None = None
    # The learned novelty score of OCR-read creatives, fitted on those readings where it beats the supplied-text one
    # on them: OCR text flattens the label ranking and loosens the exemplars, so the same evidence weighs otherwise.
    # None: the supplied-text score serves both (ocr_new_label is then set on its fits).
    ocr_novelty_model: Mapping[str, Any] | None = None
    # The version's floor for near-duplicate grouping (held_out.duplicate_floor); None: the setting alone.
    duplicate_similarity: float | None = None
    # From which similarity a recent creative is a variant of the one scored and no traffic evidence
    # (held_out.variant_level); None (calibrated before it was per version): novelty.VARIANT_SIMILARITY.
    variant_similarity: float | None = None
    # The traffic counts each campaign once (novelty.one_per_campaign); False for a version whose novelty score
    # was fitted before, on traffic read at the variant level alone.
    campaigns_once: bool = False
    source: str = "defaults"

    @property
    def ocr_novelty_score(self) -> str:
        """Which novelty score judges OCR-read creatives: "ocr" (their own) or "shared" (the supplied-text one)."""
        return "ocr" if self.ocr_novelty_model else "shared"

    @property
    def variant_level(self) -> float:
        return VARIANT_SIMILARITY if self.variant_similarity is None else self.variant_similarity

    def near_duplicate_similarity(self, setting: float) -> float:
        """From which cosine a creative joins a labelled one's group: the setting, raised to this version's floor
        where its space puts distinct creatives closer (0 stays 0: only exact duplicates group)."""
        if setting <= 0 or self.duplicate_similarity is None:
            return setting
        return min(max(setting, self.duplicate_similarity), 1.0)

    def new_label_threshold(self, text_source: str = TEXT) -> float:
        if text_source == OCR and self.ocr_new_label is not None:
            return self.ocr_new_label
        return self.new_label

    def wrong_threshold(self, label_id: int, text_source: str = TEXT) -> float:
        # Per-label thresholds were fitted on supplied text; OCR-read creatives use the global OCR one.
        if text_source == OCR and self.ocr_wrong_label is not None:
            return self.ocr_wrong_label
        return self.per_label_wrong.get(label_id, self.wrong_label)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_label_wrong"] = {str(k): v for k, v in self.per_label_wrong.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Thresholds:
        if not data:
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["per_label_wrong"] = {int(k): float(v) for k, v in (data.get("per_label_wrong") or {}).items()}
        return cls(**known)
