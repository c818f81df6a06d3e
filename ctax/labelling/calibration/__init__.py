"""Setting a version's trigger thresholds offline, on held-out labelled creatives: the steps (thresholds.calibrate),
the held-out creatives as the trigger sees them and the levels set from them (held_out), the wrong-label step
(wrong_label), OCR-like readings to calibrate OCR-read creatives on (ocr_noise), and the figures kept of it all
(curves).

Pure: vectors and texts in, thresholds and JSON-ready reports out; no models, no I/O.
"""

from ctax.labelling.calibration.thresholds import (
    Held,
    Reference,
    auroc,
    build_evidence,
    calibrate,
    simulated_traffic,
)

__all__ = ["Held", "Reference", "auroc", "build_evidence", "calibrate", "simulated_traffic"]
