"""Running an exported model: ONNX Runtime or OpenVINO, behind one call taking named numpy inputs.

Loading failures (a file that is not a model, a provider this install lacks) raise with the file's name; the
checksum check before loading is the manifest's (manifest.py)."""

from __future__ import annotations

import functools
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

    def __init__(self, spec: Spec, path: Path, device: str, streams: int | None = None) -> None:
        """streams (OpenVINO): how many inferences run at once on parts of a batch; None: as many as OpenVINO
        finds optimal for this machine (one per core or so)."""
        self.spec = spec
        self.path = path
        self.device = device
        self.precision = "int8" if spec.int8 else "fp32"
        self._run: Any = None
        self.streams = streams or 1  # OpenVINO: those it runs, once loaded
        self.inputs: list[str] = []
        try:
            if spec.engine == "onnx":
                self._load_onnx()
            else:
                self._load_openvino(streams)
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
        # Its threads wait for work asleep, not spinning: spinning kept a core from the worker's finisher thread and
        # the batch waited on the spinner. Beside a busy Python thread on 2 cores onnx-int8 encoded 64-text messages
        # at 218/s spinning and 278-296/s not, 500-510/s alone either way (docs/benchmarks.md, "Streams").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.inputs = [item.name for item in session.get_inputs()]
        output = session.get_outputs()[0].name

        def run(feeds: Mapping[str, np.ndarray]) -> np.ndarray:
            return session.run([output], {name: feeds[name] for name in self.inputs})[0]  # type: ignore[no-any-return]

        self._run = run

    def _load_openvino(self, streams: int | None) -> None:
        if self.device.startswith("cuda"):
            raise BackendUnavailable(f"backend {self.spec.name} runs on CPUs only; CTAX_DEVICE is {self.device}")
        global _core
        import openvino as ov

        if _core is None:
            _core = ov.Core()
        # Streams, not one request over every core: under LATENCY one request's threads meet at every layer, so
        # whenever another thread of the worker (its finisher, OCR) or another process takes a core, the whole
        # inference waits for it. Beside one busy Python thread on 2 cores a batch of 64 texts encoded at 179/s
        # that way against 447/s alone; as two single-thread streams, each half of the batch, at 249/s, and 454/s
        # alone (docs/benchmarks.md, "Streams"). Unpinned: the cores are shared with the worker's own threads.
        config: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT", "ENABLE_CPU_PINNING": False}
        if streams:
            config["NUM_STREAMS"] = streams
        compiled = _core.compile_model(str(self.path), "CPU", config)
        if not self.spec.int8:
            # OpenVINO's CPU plugin computes in bf16 where the CPU has native bf16 (AVX512-BF16, AMX) unless told
            # otherwise; the backend's measured accuracy covers it, and the manifest says which precision ran.
            self.precision = str(compiled.get_property("INFERENCE_PRECISION_HINT").to_string())  # "f32" / "bf16"
        self.inputs = [port.get_any_name() for port in compiled.inputs]
        requests = [compiled.create_infer_request()
                    for _ in range(max(int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")), 1))]
        self.streams = len(requests)
        log.info("openvino: %s on %d stream(s), %s", self.path.name, self.streams, self.precision)

        @functools.cache
        def over_every_core() -> Any:
            """One request over every core, for calls too small to split: compiled the first time one comes."""
            return _core.compile_model(str(self.path), "CPU", {"PERFORMANCE_HINT": "LATENCY"}).create_infer_request()

        def run(feeds: Mapping[str, np.ndarray]) -> np.ndarray:
            size = len(feeds[self.inputs[0]])
            if len(requests) > 1 and size < 2 * len(requests):
                # A search's one query on one stream's thread took 6.5-7.1 ms against 4.0-4.2 on every core.
                parts = [(over_every_core(), 0, size)]
            else:  # one stream: the whole batch; more: at least two rows each
                bounds = np.linspace(0, size, len(requests) + 1).astype(int).tolist()
                parts = list(zip(requests, bounds[:-1], bounds[1:], strict=True))
            for request, start, stop in parts:  # rows are independent: a batch's parts encode as the whole would
                request.start_async({name: feeds[name][start:stop] for name in self.inputs})
            for request, _, _ in parts:
                request.wait()
            return np.concatenate([np.array(request.get_output_tensor(0).data, copy=True) for request, _, _ in parts])

        self._run = run

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._run(feeds), dtype=np.float32)
