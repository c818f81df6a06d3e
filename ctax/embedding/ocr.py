"""OCR for creatives that arrive as an image without text: rapidocr (its models ship in the wheel), run by
onnxruntime or OpenVINO, with several engines reading a batch's images side by side.

Why a pool of engines and not rapidocr's own batching: rapidocr detects text one image at a time (images differ in
size) and batches only the text lines of one image for recognition, padded to the widest line of each group of
six; pooling lines across images would change that padding and so, now and then, the text read. A pool of
engines, each with an equal share of the cores, reads every image exactly as one engine does; one-thread engines
also keep onnxruntime's spinning thread pool off cores that other work needs. On 2 shared cores, onnxruntime
engines of one thread read 2.1x as many rendered ads per second as one engine with the library's default threads,
and OpenVINO's 1.6x more again, with the same text on every image (docs/benchmarks.md, `bench.ocr`).

The labeller runs OCR before the towers, not beside them: each then has all the cores in turn (overlapping them
gained 14% on one image set and lost 20% on the other in the same run).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

MIN_CONFIDENCE = 0.5
_RUN = re.compile(r"[A-Za-z]{6,}")

OcrBackend = Literal["onnxruntime", "openvino"]
OCR_BACKENDS: tuple[OcrBackend, ...] = ("onnxruntime", "openvino")
# What each backend needs installed: (importable module, the distribution to install for it).
_NEEDS = {"onnxruntime": ("rapidocr_onnxruntime", "rapidocr-onnxruntime"), "openvino": ("openvino", "openvino")}
# rapidocr's three models, by the attribute of its engine that runs each (see make_engine).
_MODELS = {("text_det", "infer"): "ch_PP-OCRv4_det_infer.onnx",
           ("text_cls", "infer"): "ch_ppocr_mobile_v2.0_cls_infer.onnx",
           ("text_rec", "session"): "ch_PP-OCRv4_rec_infer.onnx"}


class OcrUnavailable(RuntimeError):
    """The OCR backend asked for cannot run here (its package is missing, or it failed to read the probe)."""


def respace(text: str) -> str:
    """rapidocr drops the spaces between English words ("Betterthanothersofitskind"), which costs the text
    tower about 5 points of top-1 (docs/image_study.md). Runs of 6+ letters that are not words themselves are
    split by wordninja's word-frequency model; words it knows, brand names included ("Volkswagen"), stay whole."""
    import wordninja

    costs = wordninja.DEFAULT_LANGUAGE_MODEL._wordcost

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.lower() in costs:
            return word
        pieces = wordninja.split(word)
        return " ".join(pieces) if len(pieces) > 1 else word

    return _RUN.sub(fix, text)


def text_of(result: Sequence[Any] | None) -> str:
    """rapidocr's boxes as one line of text: confident reads only, in reading order, respaced."""
    if not result:
        return ""
    # Reading order: top to bottom, then left to right, by each box's top-left corner.
    lines = sorted(result, key=lambda item: (round(item[0][0][1] / 10), item[0][0][0]))
    return respace(" ".join(text for _, text, score in lines if float(score) >= MIN_CONFIDENCE).strip())


def cpu_count() -> int:
    """The cores this process may run on (a container or `taskset` may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def installed_backends() -> list[OcrBackend]:
    return [name for name in OCR_BACKENDS if importlib.util.find_spec(_NEEDS[name][0]) is not None]


def check_backend(name: str) -> OcrBackend:
    """The backend named, or a clear error: an unknown name, or one whose package is not installed."""
    if name not in OCR_BACKENDS:
        raise ValueError(f"unknown OCR backend {name!r}: expected one of {', '.join(OCR_BACKENDS)}")
    module, distribution = _NEEDS[name]
    if importlib.util.find_spec(module) is None:
        raise OcrUnavailable(f"OCR backend {name} needs the {distribution} package (pip install {distribution})")
    return name


class _OpenVinoModel:
    """One of rapidocr's ONNX models compiled by OpenVINO, called the way rapidocr calls its onnxruntime sessions
    (an array in, a list of outputs back).

    Written here rather than taken from the `rapidocr-openvino` package: that package pins openvino<=2024.0 and
    imports `openvino.runtime`, which openvino 2026 (installed for the towers' openvino backend) no longer has, so
    installing it would downgrade the towers' openvino. This reuses rapidocr-onnxruntime's pre- and post-processing
    and its model files, so only the inference engine differs."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino

        # f32, not the bf16 OpenVINO picks by itself on CPUs with AVX512-BF16: bf16 changed the text read from
        # about one rendered ad in ten, where f32 reads exactly what onnxruntime reads.
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        self._request = openvino.Core().compile_model(str(path), "CPU", config).create_infer_request()

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        self._request.infer([batch])
        return [self._request.get_output_tensor(0).data.copy()]  # the request reuses its output buffer


def make_engine(backend: str, threads: int = 0) -> Any:
    """One rapidocr engine on `backend`, with `threads` inference threads (0: the library's default, all cores)."""
    check_backend(backend)
    from rapidocr_onnxruntime import RapidOCR

    if backend == "onnxruntime":
        return RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1) if threads > 0 else RapidOCR()
    # The onnxruntime sessions built here are replaced at once; one thread each keeps that cheap.
    engine = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    import rapidocr_onnxruntime

    models = Path(rapidocr_onnxruntime.__file__).parent / "models"
    for (part, attribute), file in _MODELS.items():
        setattr(getattr(engine, part), attribute, _OpenVinoModel(models / file, threads))
    return engine


class OcrReader:
    """`workers` engines of one backend; `read_many` reads a batch's images side by side, one image per engine at
    a time, and gives exactly what reading them one by one gives."""

    def __init__(self, backend: str = "onnxruntime", workers: int = 1, threads: int | None = None) -> None:
        self.backend = check_backend(backend)
        if workers < 1:
            raise ValueError(f"OCR workers must be at least 1, got {workers}")
        self.workers = workers
        # Each engine gets an equal share of the cores: more threads than cores only makes them wait on each other.
        self.threads = max(1, cpu_count() // workers) if threads is None else threads
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        warm = probe_images()[0]
        for _ in range(workers):
            engine = make_engine(backend, self.threads)
            engine(_bgr(warm))  # the first call of an engine pays for its set-up: not the first batch's business
            self._idle.put(engine)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ctax-ocr") if workers > 1 else None

    def describe(self) -> str:
        return f"{self.backend}, {self.workers} engine(s) x {self.threads or 'default'} thread(s)"

    def read(self, image: Image.Image) -> str:
        """The image's text; "" when it has none or cannot be read (one bad image must not sink its batch: the
        creative is still labelled by its image, and the warning says why it had no OCR text)."""
        try:
            pixels = _bgr(image)
        except Exception as exc:
            log.warning("OCR skipped an image that cannot be read (%s %s): %s", image.mode, image.size, exc)
            return ""
        engine = self._idle.get()  # an engine (OpenVINO's infer request above all) serves one thread at a time
        try:
            result, _ = engine(pixels)
        except Exception as exc:
            log.warning("OCR failed on a %s %s image: %s", image.mode, image.size, exc)
            return ""
        finally:
            self._idle.put(engine)
        return text_of(result)

    def read_many(self, images: Sequence[Image.Image]) -> list[str]:
        if self._pool is None or len(images) < 2:
            return [self.read(image) for image in images]
        return list(self._pool.map(self.read, images))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _bgr(image: Image.Image) -> np.ndarray:
    """The image as rapidocr wants it (BGR, like cv2). Transparent parts go on white: converting straight to RGB
    keeps whatever colour hides under the transparency, often black, and black text on black is not read."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))[:, :, ::-1]


PROBE_TEXTS = ("Adopt a dog today", "Fresh coffee every morning", "Save on winter tyres", "Fly to Lisbon for less")
_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def probe_images() -> list[Image.Image]:
    """Ad-sized images (256 px, which rapidocr reads as 736 px like any small creative), one line of text each."""
    font: Any = ImageFont.truetype(str(_FONT), 26) if _FONT.is_file() else ImageFont.load_default(26)
    out = []
    for n, text in enumerate(PROBE_TEXTS):
        image = Image.new("RGB", (256, 256), (40 + 50 * n, 90, 160))
        draw = ImageDraw.Draw(image)
        words = text.split()
        for row, line in enumerate((words[:2], words[2:])):
            draw.text((14, 90 + 40 * row), " ".join(line), font=font, fill=(255, 255, 255))
        out.append(image)
    return out


@dataclass
class ProbeResult:
    backend: OcrBackend
    per_s: float
    reads_probe: bool


def probe(reader: OcrReader, rounds: int = 2) -> ProbeResult:
    """Images per second of `reader` on the probe images (read `rounds` times, side by side), and whether it read
    their words (a backend that runs but reads nothing useful must not win on speed)."""
    images = probe_images() * rounds
    start = time.perf_counter()
    texts = reader.read_many(images)
    per_s = len(images) / (time.perf_counter() - start)
    wanted = [set(t.lower().split()) for t in PROBE_TEXTS] * rounds
    found = sum(len(want & set(got.lower().split())) for want, got in zip(wanted, texts, strict=True))
    return ProbeResult(reader.backend, per_s, found >= 0.8 * sum(len(w) for w in wanted))


def choose(results: Sequence[ProbeResult], skipped: Sequence[str] = ()) -> ProbeResult:
    """The fastest backend among those that read the probe's words; a clear error when none did."""
    usable = [result for result in results if result.reads_probe]
    if not usable:
        why = [f"{r.backend} misread the probe images" for r in results] + list(skipped)
        raise OcrUnavailable(f"no OCR backend can run here: {'; '.join(why) or 'none installed'}")
    return max(usable, key=lambda result: result.per_s)


def open_reader(setting: str, workers: int = 0) -> tuple[OcrReader, str]:
    """The reader the settings ask for and a line saying which backend reads and why. `auto`: each backend that
    can run here reads the probe images, and the faster one that reads them right is kept (one that cannot run is
    skipped, the reason logged). A backend named explicitly that cannot run raises OcrUnavailable: the operator
    asked for it. `workers` 0: one engine per core."""
    workers = workers or cpu_count()
    if setting != "auto":
        reader = OcrReader(setting, workers)
        return reader, f"{reader.describe()} (CTAX_OCR_BACKEND={setting})"
    readers: dict[str, OcrReader] = {}
    results: list[ProbeResult] = []
    skipped: list[str] = []
    for backend in OCR_BACKENDS:
        try:
            readers[backend] = OcrReader(backend, workers)
        except Exception as exc:  # not installed, or failing to load: the other backend may still serve
            log.warning("OCR backend %s skipped: %s", backend, exc)
            skipped.append(f"{backend} skipped: {exc}")
            continue
        results.append(probe(readers[backend]))
    best = choose(results, skipped)
    for name, reader in readers.items():
        if name != best.backend:
            reader.close()
    measured = [f"{r.backend} {r.per_s:.1f}/s" + ("" if r.reads_probe else " (misread)") for r in results]
    return readers[best.backend], f"{readers[best.backend].describe()} (auto, faster at start-up: " \
        f"{', '.join(measured + skipped)})"
