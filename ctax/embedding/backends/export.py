"""Writing a version's exported towers: ONNX graphs traced from the torch towers, int8 by ONNX Runtime's dynamic
quantisation, OpenVINO IR converted from the ONNX graph, int8 by NNCF's post-training quantisation.

Why by hand and not through sentence-transformers' ``backend=`` and its export helpers: those go through optimum
(optimum-onnx / optimum-intel), whose releases require transformers < 5 (optimum-intel 2.2: < 5.6), and this
project runs transformers 5.x, which sentence-transformers 6.3 needs. The trace below is the same one optimum
runs (torch.onnx's TorchScript exporter over the whole sentence-transformers pipeline), and the quantisers are
the libraries' own (onnxruntime.quantization, nncf). Exports are written to a temporary name and renamed, so a
crash never leaves a half-written file that looks finished."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from ctax.embedding.image import ImageEncoder
    from ctax.embedding.text import TextEncoder

log = logging.getLogger(__name__)
OPSET = 17
IMAGE_INPUT = "pixels"
OUTPUT = "embedding"
# Dynamic int8 on the matrix products, where the time goes; convolutions (a ViT's patch embedding) stay fp32,
# since ONNX Runtime's integer convolution is slower on CPU than its float one.
QUANTISED_OPS = ["MatMul", "Gemm"]


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def _export(module: torch.nn.Module, args: tuple[Any, ...], names: list[str], axes: dict[str, dict[int, str]],
            path: Path) -> None:
    import torch

    # nn.MultiheadAttention (open_clip's ViTs) takes a fused "fast path" under no_grad whose operator has no ONNX
    # form; off while tracing, the same attention is traced from its plain operators.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with _atomic(path) as temporary, warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes about Python control flow in transformers' code
            # dynamo=False: the TorchScript exporter needs no onnxscript and traces sentence-transformers' modules
            # as they run; the dynamo one does not install beside our pins.
            torch.onnx.export(module.eval(), args, str(temporary), dynamo=False, input_names=names,
                              output_names=[OUTPUT], dynamic_axes={**axes, OUTPUT: {0: "batch"}},
                              opset_version=OPSET)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def export_text(encoder: TextEncoder, path: Path) -> list[str]:
    """The whole sentence-transformers pipeline (transformer, pooling, normalisation) as one graph taking what its
    own tokeniser returns; returns the graph's input names."""
    import torch

    model: Any = encoder.model
    features = model.preprocess(["an example sentence to trace the graph with", "and a second, shorter one"])
    names = [name for name, value in features.items() if isinstance(value, torch.Tensor)]

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            out = self.model({**dict(zip(names, tensors, strict=True)), "modality": "text"})
            return out["sentence_embedding"]  # type: ignore[no-any-return]

    _export(Pipeline(), tuple(features[name].to(model.device) for name in names), names,
            {name: {0: "batch", 1: "sequence"} for name in names}, path)
    return names


def export_image(encoder: ImageEncoder, path: Path) -> None:
    """Visual tower, projection and normalisation as one graph over preprocessed pixels."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual, self.projection = encoder.visual, encoder.projection

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            features = self.visual(pixels)
            if isinstance(features, tuple):
                features = features[0]
            return torch.nn.functional.normalize(self.projection(features), dim=-1)

    height, width = encoder.image_size
    pixels = torch.zeros(2, 3, height, width, device=encoder.device)
    _export(Tower(), (pixels,), [IMAGE_INPUT], {IMAGE_INPUT: {0: "batch"}}, path)


def quantise_onnx(source: Path, path: Path) -> None:
    """ONNX Runtime dynamic int8: weights per output channel, activations quantised per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a pre-processing advice to the root logger on every call
    try:
        with _atomic(path) as temporary:
            quantize_dynamic(str(source), str(temporary), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=QUANTISED_OPS)
    finally:
        root.setLevel(level)


def to_openvino(source: Path, path: Path) -> None:
    """OpenVINO IR of an ONNX graph, weights kept in fp32 (save_model would halve them to fp16 by default)."""
    import openvino as ov

    model = ov.convert_model(str(source))
    _save_openvino(model, path, compress_to_fp16=False)


def quantise_openvino(source: Path, path: Path, samples: Sequence[Mapping[str, np.ndarray]]) -> None:
    """NNCF post-training int8 (weights and activations), its activation ranges calibrated on `samples`: batches
    of the version's own inputs, tokenised or preprocessed as serving does."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(source))
    quantised = nncf.quantize(model, nncf.Dataset(list(samples)), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=max(len(samples), 1))
    _save_openvino(quantised, path, compress_to_fp16=False)


def _save_openvino(model: Any, path: Path, *, compress_to_fp16: bool) -> None:
    import openvino as ov

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{path.name}")
    ov.save_model(model, str(temporary), compress_to_fp16=compress_to_fp16)
    temporary.with_suffix(".bin").replace(path.with_suffix(".bin"))
    temporary.replace(path)  # the .xml last: it is what names the weights
