"""Running an exported model: ONNX Runtime or OpenVINO, behind one call taking named numpy inputs.

Loading failures (a file that is not a model, a provider this install lacks) raise with the file's name; the
checksum check before loading is the manifest's (manifest.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ctax.embedding.backends.spec import CUDA_PROVIDER, BackendFileError, BackendUnavailable, Spec

log = logging.getLogger(__name__)
_core: Any = None


class Engine:
    """A loaded model: ``engine(feeds)`` returns its first output as float32."""

    def __init__(self, spec: Spec, path: Path, device: str) -> None:
        self.spec = spec
        self.path = path
        self.device = device
        self.precision = "int8" if spec.int8 else "fp32"
        self._run: Any = None
        self.inputs: list[str] = []
        try:
            if spec.engine == "onnx":
                self._load_onnx()
            else:
                self._load_openvino()
        except (BackendUnavailable, BackendFileError):
            raise
        except Exception as exc:  # what the runtimes raise for a file that is no model is theirs, not ours
            raise BackendFileError(f"exported {spec.name} file {path} cannot be loaded: "
                                   f"{' '.join(str(exc).split())[:300]}") from exc

    def _load_onnx(self) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            if CUDA_PROVIDER not in ort.get_available_providers():
                raise BackendUnavailable(
                    f"CTAX_DEVICE=cuda with backend {self.spec.name} needs onnxruntime's {CUDA_PROVIDER}, which "
                    f"this install lacks (it has {', '.join(ort.get_available_providers())}); install "
                    "onnxruntime-gpu, or use CTAX_BACKEND=torch on the GPU")
            index = int(self.device.partition(":")[2] or 0)
            providers = [(CUDA_PROVIDER, {"device_id": index}), "CPUExecutionProvider"]  # type: ignore[list-item]
        options = ort.SessionOptions()
        # One inference at a time per worker process: its threads all go to the operators of that one call.
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.inputs = [item.name for item in session.get_inputs()]
        output = session.get_outputs()[0].name

        def run(feeds: Mapping[str, np.ndarray]) -> np.ndarray:
            return session.run([output], {name: feeds[name] for name in self.inputs})[0]  # type: ignore[no-any-return]

        self._run = run

    def _load_openvino(self) -> None:
        if self.device.startswith("cuda"):
            raise BackendUnavailable(f"backend {self.spec.name} runs on CPUs only; CTAX_DEVICE is {self.device}")
        global _core
        import openvino as ov

        if _core is None:
            _core = ov.Core()
        # LATENCY: the worker runs one batch at a time, and wants all cores on it (THROUGHPUT would split them
        # into parallel streams that one synchronous call cannot fill).
        compiled = _core.compile_model(str(self.path), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        if not self.spec.int8:
            # OpenVINO's CPU plugin computes in bf16 where the CPU has native bf16 (AVX512-BF16, AMX) unless told
            # otherwise; the backend's measured accuracy covers it, and the manifest says which precision ran.
            self.precision = str(compiled.get_property("INFERENCE_PRECISION_HINT").to_string())  # "f32" / "bf16"
        self.inputs = [port.get_any_name() for port in compiled.inputs]
        request = compiled.create_infer_request()

        def run(feeds: Mapping[str, np.ndarray]) -> np.ndarray:
            result = request.infer({name: feeds[name] for name in self.inputs})
            return np.array(result[compiled.output(0)], copy=True)

        self._run = run

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._run(feeds), dtype=np.float32)
