"""Inference backends for a version's towers: torch (the towers as trained), ONNX Runtime and OpenVINO, each in
fp32 and int8. Exported files are artefacts of a model version, written when the version is built and checked
(sha256) before they are loaded; the choice between backends is measured per version (ctax/versions/backends.py).
"""
