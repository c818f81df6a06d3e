"""The backends' names, the files each writes per tower, and the error a bad exported file raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ctax.embedding.config import CorruptArtefact

BackendName = Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
BackendSetting = Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
Modality = Literal["text", "image"]

BACKENDS: tuple[BackendName, ...] = get_args(BackendName)
EXPORTED: tuple[BackendName, ...] = tuple(name for name in BACKENDS if name != "torch")
MODALITIES: tuple[Modality, ...] = get_args(Modality)
DIRECTORY = "backends"  # inside the version's artefact directory
CUDA_PROVIDER = "CUDAExecutionProvider"


class BackendFileError(CorruptArtefact):
    """An exported file that is missing, altered or unloadable; the message names the file."""

    code = "corrupt_backend_file"


class BackendUnavailable(RuntimeError):
    """A backend that cannot run here (no CUDA provider in this onnxruntime, OpenVINO asked to use CUDA)."""


@dataclass(frozen=True)
class Spec:
    name: BackendName
    engine: Literal["torch", "onnx", "openvino"]
    int8: bool

    def files(self, modality: Modality) -> list[str]:
        """The files (relative to the artefact directory) this backend runs for one tower; the first is the model."""
        if self.engine == "onnx":
            return [f"{DIRECTORY}/{modality}{'.int8' if self.int8 else ''}.onnx"]
        if self.engine == "openvino":
            stem = f"{DIRECTORY}/{modality}.openvino{'-int8' if self.int8 else ''}"
            return [f"{stem}.xml", f"{stem}.bin"]
        return []


def spec(name: str) -> Spec:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")
    engine, _, precision = name.partition("-")
    return Spec(name, engine, precision == "int8")  # type: ignore[arg-type]


def runs_on(name: BackendName, device: str) -> bool:
    """OpenVINO runs on CPUs (and Intel GPUs), never on CUDA devices; the others run on both."""
    return not (device.startswith("cuda") and spec(name).engine == "openvino")


def onnx_runs_on_cuda() -> bool:
    """Whether this install's onnxruntime has a CUDA provider (onnxruntime-gpu); the CPU wheel has none."""
    import onnxruntime

    return CUDA_PROVIDER in onnxruntime.get_available_providers()


def candidates(setting: BackendSetting, device: str) -> list[BackendName]:
    """The exported backends a version built under this setting gets: all that run on the device for `auto`
    (on CUDA, the ONNX ones only where onnxruntime has a CUDA provider: exporting what would then fall back to
    the CPU costs the build minutes for a backend that can never win), none for `torch`, the one named
    otherwise."""
    if setting == "auto":
        cuda = device.startswith("cuda")
        return [name for name in EXPORTED if runs_on(name, device)
                and not (cuda and spec(name).engine == "onnx" and not onnx_runs_on_cuda())]
    if setting == "torch":
        return []
    return [setting]
