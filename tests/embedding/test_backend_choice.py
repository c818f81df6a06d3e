"""Which backend `auto` serves (pure: measurements in, a name and the reason out), and which backends a setting
builds on which device."""

from __future__ import annotations

import pytest

from ctax.embedding.backends.choice import Measured, choose
from ctax.embedding.backends.spec import candidates, runs_on, spec

TORCH = Measured("torch", {"text": 100.0, "image": 10.0}, {"text": 1.0, "image": 1.0},
                 {"top1": 0.60, "novelty_auroc": 0.80, "wrong_label_auroc": 0.90})


def test_the_fastest_backend_within_tolerance_serves() -> None:
    onnx = Measured("onnx", {"text": 150.0, "image": 15.0}, accuracy={"top1": 0.60, "novelty_auroc": 0.801,
                                                                       "wrong_label_auroc": 0.90})
    int8 = Measured("onnx-int8", {"text": 300.0, "image": 30.0}, accuracy={"top1": 0.597, "novelty_auroc": 0.797,
                                                                            "wrong_label_auroc": 0.899})
    choice = choose([TORCH, onnx, int8], tolerance=0.005)
    assert choice.backend == "onnx-int8" and "3.00x torch's speed" in choice.reason
    assert choice.losses["onnx-int8"] == {"top1": 0.003, "novelty_auroc": 0.003, "wrong_label_auroc": 0.001}
    assert choice.losses["onnx"]["novelty_auroc"] == pytest.approx(-0.001)  # a gain is a negative loss


def test_a_backend_losing_more_than_the_tolerance_is_excluded_saying_by_how_much() -> None:
    onnx = Measured("onnx", {"text": 150.0, "image": 15.0}, accuracy=dict(TORCH.accuracy))
    int8 = Measured("onnx-int8", {"text": 300.0, "image": 30.0}, accuracy={**TORCH.accuracy, "top1": 0.588})
    choice = choose([TORCH, onnx, int8], tolerance=0.005)
    assert choice.backend == "onnx"
    assert "onnx-int8: loses 0.0120 top1 (tolerance 0.005)" in choice.reason
    assert choice.qualified == ["torch", "onnx"]


def test_without_validation_data_only_backends_reproducing_torchs_vectors_qualify() -> None:
    torch = Measured("torch", {"text": 100.0}, {"text": 1.0})
    openvino = Measured("openvino", {"text": 200.0}, {"text": 0.99995})
    int8 = Measured("onnx-int8", {"text": 400.0}, {"text": 0.985})
    choice = choose([torch, openvino, int8], tolerance=0.005)
    assert choice.backend == "openvino" and "no validation data" in choice.reason
    assert "onnx-int8: no validation data, and its vectors' cosine to torch 0.98500 < 0.999" in choice.reason


def test_speed_counts_every_tower_and_failures_or_slower_backends_leave_torch() -> None:
    # Faster text, much slower image: slower per creative overall.
    lopsided = Measured("openvino", {"text": 1000.0, "image": 5.0}, {"text": 1.0, "image": 1.0},
                        dict(TORCH.accuracy))
    broken = Measured("onnx", {}, error="text export: unsupported operator")
    text_only = Measured("onnx-int8", {"text": 1000.0}, {"text": 1.0}, dict(TORCH.accuracy))
    choice = choose([TORCH, lopsided, broken, text_only], tolerance=0.005)
    assert choice.backend == "torch" and "no exported backend is faster" in choice.reason
    assert "onnx: failed: text export: unsupported operator" in choice.reason
    assert "onnx-int8: measured for text only" in choice.reason
    with pytest.raises(ValueError, match="torch's measurement"):
        choose([lopsided], tolerance=0.005)


def test_auto_on_cuda_exports_onnx_only_where_onnxruntime_has_a_cuda_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    # This machine's onnxruntime is the CPU wheel: an ONNX export would only ever run on the CPU beside a GPU.
    assert "CUDAExecutionProvider" not in onnxruntime.get_available_providers()
    assert candidates("auto", "cuda:0") == [] and candidates("auto", "cpu") != []
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert candidates("auto", "cuda:0") == ["onnx", "onnx-int8"]  # OpenVINO never runs on CUDA
    assert candidates("onnx", "cuda:0") == ["onnx"]  # a named backend is built as asked, and refused at load


def test_what_each_setting_builds_on_each_device() -> None:
    assert candidates("auto", "cpu") == ["onnx", "onnx-int8", "openvino", "openvino-int8"]
    assert candidates("torch", "cpu") == [] and candidates("openvino", "cpu") == ["openvino"]
    assert not runs_on("openvino-int8", "cuda") and runs_on("onnx", "cuda")
    assert spec("openvino-int8").files("text") == ["backends/text.openvino-int8.xml",
                                                   "backends/text.openvino-int8.bin"]
    assert spec("onnx-int8").files("image") == ["backends/image.int8.onnx"]
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        spec("tensorrt")
