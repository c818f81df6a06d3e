"""Setting a version's trigger thresholds offline, on held-out labelled creatives: the steps (thresholds.calibrate),
what they read and measure (validation), the held-out creatives as the trigger sees them and the levels set from
them (held_out), the wrong-label step (wrong_label), the step for OCR-read creatives (ocr_thresholds) and the
OCR-like readings it is set on (ocr_noise), and the figures kept of it all (curves).

Pure: vectors and texts in, thresholds and JSON-ready reports out; no models, no I/O.
"""

from ctax.labelling.calibration.held_out import Held, Reference, build_evidence, simulated_traffic
from ctax.labelling.calibration.thresholds import calibrate
from ctax.labelling.calibration.validation import auroc

__all__ = ["Held", "Reference", "auroc", "build_evidence", "calibrate", "simulated_traffic"]
