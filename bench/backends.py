"""The towers' inference backends side by side, in one run: raw creatives/s at the worker's batch size, labelling
creatives/s end to end through the worker's task code, vectors' cosine to torch's, and `ctax eval` on the Pitt split
(top-1, novelty AUROC, wrong-label AUROC) with each backend.

    python -m bench.backends                              # text and image, every backend
    python -m bench.backends --modes text --eval-train 1500 --eval-test 600 --json out.json
    python -m bench.backends --device cpu --quick         # what bench/gpu_check.sh runs (device cuda on a GPU)

Per modality a pretrained version is made once (its image tower saved, so every load is the same tower) and its
backends built and measured by the version build itself (ctax/versions/backends.py). Then for each backend, in this
process: the raw figure (the version's towers loaded with that backend, timed on the payloads in messages of the
worker's batch size, each encoded as the worker encodes a message, the fastest of two passes after a warm-up before
end to end and two after it), then end to end (a worker runtime loading the
version with CTAX_BACKEND=<backend>, the payloads stored as creatives and labelled by the labelling task's own code,
batch by batch: database, towers, index search, trigger, as the worker runs them, both pipelined (each batch
finished on the finisher thread while the next is encoded) and one after the other ("serial"), in turns, after
one untimed pass over the same payloads as the raw figure has; the row's end-to-end figure is the one of the two
the worker's task runs for that backend (CTAX_LABEL_PIPELINE=auto: one after the other for torch on a CPU); no HTTP
or queue: those are bench.throughput's; near-duplicate groups off, as
every backend labels the same payloads), and for text `ctax eval` on the Pitt split with that backend
(bench.pitt_eval's split, optionally subsampled). By default end to end runs with no labels imported (every creative
is flagged new_label and opens a review item) and no traffic window; `--taxonomy` imports the Pitt taxonomy and
`--traffic-window 5000` keeps the service's default window (and its sweep), each backend's starting empty;
`--labelled 1500` imports labelled Pitt ads and calibrates the version on them first, as the service does after
an import (its learned novelty score then reads the traffic: the arrival search, the campaigns counted once, the
sweep's re-decisions), and `--distinct` posts other ads in each end-to-end pass, so that the window holds
distinct creatives as the service's does rather than five copies of each:

    python -m bench.backends --modes text --no-eval --taxonomy --traffic-window 5000 --labelled 1500 --distinct

Image
creatives: ViT-B-32 with random weights and an untrained projection (no pretrained CLIP weights here): speed and
agreement with torch are measured, accuracy is not (it would be noise's).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.pitt_eval import split
from bench.throughput import WORKER_BATCH, images, labelled_file, texts

console = Console(width=160)
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")


def settings_for(mode: str, work: Path, backend: str, batch_size: int, device: str, traffic_window: int = 0,
                 **overrides: Any) -> Any:
    from ctax.config import Settings

    # Every backend labels the same payloads in one database: with near-duplicate groups on, the second backend's
    # creatives would be exact copies of the first's, grouped before encoding, and never reach the towers.
    values: dict[str, Any] = {"data_dir": work / mode, "backend": backend, "label_batch_size": batch_size,
                              "device": device, "ocr_enabled": False, "novelty_traffic_window": traffic_window,
                              "duplicate_groups": False}
    if mode == "text":
        values["image_enabled"] = False
    else:
        values |= {"image_arch": "ViT-B-32", "image_pretrained": None, "image_projection": "random"}
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


def make_version(mode: str, work: Path, batch_size: int, device: str, payloads: list[Any],
                 names: list[str]) -> Path:
    """The pretrained version a first start makes (no exports), its random image tower saved, then its backends
    built by the version build's own code, measured on this run's payloads."""
    from ctax.creatives.images import decode_rgb
    from ctax.embedding.config import ImageConfig, SpaceConfig
    from ctax.embedding.space import SharedSpace
    from ctax.jobs import LABEL_QUEUE
    from ctax.store.migrate import upgrade
    from ctax.versions.backends import Probe, build_backends
    from ctax.worker.runtime import Runtime

    settings = settings_for(mode, work, "torch", batch_size, device)
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings, [LABEL_QUEUE], owns_index=True)
    rt.start()
    version, directory = rt.info["model_version"], settings.model_dir / rt.info["model_version"]
    rt.stop()
    rt.index.client.close()
    if mode == "image":
        config = SpaceConfig.read(directory)
        SharedSpace.load_torch(directory, device).image.save(directory / "image")  # type: ignore[union-attr]
        config.image = ImageConfig(arch="ViT-B-32", pretrained=None, saved="image")
        config.write(directory)
    space = SharedSpace.load_torch(directory, device)
    probe = Probe(payloads[: 4 * batch_size], []) if mode == "text" else Probe(
        [], [decode_rgb(p) for p in payloads[: 2 * batch_size]])
    console.print(f"{mode}: building and measuring {', '.join(names)} for {version} (the version build's code)")
    summary = build_backends(space, directory, settings.model_copy(update={"backend": "auto"}), space.text.device,
                             probe, names=names)  # type: ignore[arg-type]
    console.print(f"{mode}: auto would serve {summary['backend']}: {summary['reason']}")
    return directory


class RawTowers:
    """The version's towers loaded with one backend, timed alone: the payloads in messages of the worker's batch
    size, each encoded as `SharedSpace.encode` encodes a message (the tower's own batch, space.text_batch /
    image_batch, within it), so that raw and end to end differ only by the labelling task's own work."""

    def __init__(self, mode: str, directory: Path, backend: str, payloads: list[Any], batch_size: int,
                 device: str) -> None:
        from ctax.embedding.space import SharedSpace

        self.mode, self.payloads, self.batch_size = mode, payloads, batch_size
        self.space = SharedSpace.load(directory, device, backend)
        self.best = 0.0

    def encode(self) -> Any:
        from ctax.creatives.images import decode_rgb

        if self.mode == "text":
            return self.space.encode_messages(texts=self.payloads, message=self.batch_size)
        # Decoding is part of the tower's work per creative, as in bench.throughput.
        return self.space.encode_messages(images=[decode_rgb(p) for p in self.payloads], message=self.batch_size)

    def measure(self) -> Any:
        """Vectors of an untimed pass, then the faster of two timed ones; the best over every call is kept."""
        from ctax.versions.backends import rate

        vectors, per_s = rate(self.encode, len(self.payloads))
        self.best = max(self.best, per_s)
        return vectors


def import_taxonomy(mode: str, work: Path, batch_size: int, device: str) -> None:
    """The Pitt taxonomy, as bench.throughput imports it: labels to decide between, as in service (without it
    every creative fits no label and is flagged new_label)."""
    from ctax.store.session import Database
    from ctax.taxonomy.catalog import import_labels
    from ctax.taxonomy.importers import parse_taxonomy_file
    from tests.support import SHARED_DATA

    db = Database(settings_for(mode, work, "torch", batch_size, device).sqlalchemy_url)
    with db.write() as session:
        import_labels(session, parse_taxonomy_file((SHARED_DATA / "pitt_ads_taxonomy.txt").read_bytes()))
    db.engine.dispose()


def end_to_end(mode: str, work: Path, backend: str, payloads: list[Any], batch_size: int, device: str,
               traffic_window: int = 0, passes: Sequence[list[Any]] | None = None, **overrides: Any,
               ) -> tuple[float, float, bool]:
    """The payloads stored as creatives, then labelled by the labelling task's code a batch (a message) at a time:
    creatives/s pipelined (each batch finished on the runtime's finisher thread while the next is encoded,
    worker/finisher.py) and one after the other, each the faster of two passes taken in turns, and whether the
    worker's task pipelines with this backend (CTAX_LABEL_PIPELINE=auto: not torch on a CPU).
    `passes`: other payloads for each of the five passes (the warm-up first), so that the traffic window fills with
    distinct creatives rather than copies of the same ones (bench.fixed_cost --distinct). `overrides`: settings
    other than settings_for's (bench.fixed_cost --duplicate-groups)."""
    from sqlalchemy import func, select

    from ctax.creatives.intake import CreativeSubmission, create_creative
    from ctax.enums import CreativeStatus
    from ctax.jobs import LABEL_QUEUE
    from ctax.store.models import Creative
    from ctax.worker.runtime import Runtime
    from ctax.worker.tasks.label import run

    rt = Runtime(settings_for(mode, work, backend, batch_size, device, traffic_window, **overrides), [LABEL_QUEUE],
                 owns_index=True)
    rt.start()
    try:
        assert rt.info["backend"].startswith(backend), rt.info
        # Every backend starts from an empty traffic window (its own creatives are its traffic, and its sweep).
        rt.index.prune_traffic(rt.info["model_version"], 0)

        each_pass = iter(passes or [])

        def label_all(pipelined: bool) -> float:
            posted = next(each_pass, payloads)
            with rt.db.write() as session:
                ids = [create_creative(session, rt.blobs, rt.settings, CreativeSubmission(
                    texts=[p]) if mode == "text" else CreativeSubmission(image=p), None)[0].id for p in posted]
            start = time.perf_counter()
            for i in range(0, len(ids), batch_size):
                run(rt, ids[i : i + batch_size], pipelined=pipelined)
            rt.finisher.settle()
            seconds = time.perf_counter() - start
            with rt.db.read() as session:
                done = session.scalar(select(func.count()).select_from(Creative).where(
                    Creative.id.in_(ids), Creative.status == CreativeStatus.LABELLED))
            assert done == len(ids), f"{done} of {len(ids)} labelled"
            return len(ids) / seconds

        # Warm-up: the payloads labelled once, untimed, as the raw figure's warm-up pass encodes them once. Lazy
        # set-up is paid, and OpenVINO compiles its kernels for each input shape the first time it meets it
        # (the service meets its shapes in its first minutes); then the same payloads again, as new creatives.
        label_all(True)
        # Each way twice, in turns, the faster kept: a shared machine's hiccup does not decide the comparison.
        rates = [(label_all(True), label_all(False)) for _ in range(2)]
        # And which of the two the worker's task runs for this backend (CTAX_LABEL_PIPELINE=auto: Runtime.pipelines).
        return max(r[0] for r in rates), max(r[1] for r in rates), rt.pipelines(rt.labeller())
    finally:
        rt.stop()
        rt.index.client.close()


def gpu_memory(device: str) -> dict[str, Any]:
    """torch's peak GPU allocation since the last call (the torch towers' share; ONNX Runtime's own arena is seen
    only by nvidia-smi, which bench/gpu_check.sh samples)."""
    if not device.startswith("cuda"):
        return {}
    import torch

    peak = torch.cuda.max_memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    return {"gpu_torch_peak_mib": round(peak, 1)}


def subsample(path: Path, n: int, out: Path) -> Path:
    """The first n ads by a seeded hash of their id (all of them when n is 0)."""
    lines = path.read_text().splitlines()
    if n:
        lines = sorted(lines, key=lambda line: hashlib.sha256(json.loads(line)["id"].encode()).hexdigest())[:n]
    out.write_text("\n".join(lines) + "\n")
    return out


def import_labelled_examples(work: Path, batch_size: int, traffic_window: int, n: int, payloads: list[str],
                             seed: int) -> str:
    """N labelled Pitt ads (none whose texts are among the payloads) imported and the version re-calibrated on
    them, as the index owner does after an import: a version calibrated on labelled data has a learned novelty
    score, which reads the traffic (one calibrated without has none, and its labelling never searches the window).
    Returns what the version's score reads."""
    from ctax.dataset.importing import import_labelled
    from ctax.jobs import LABEL_QUEUE
    from ctax.versions import lifecycle
    from ctax.worker.runtime import Runtime

    path = labelled_file(work, n, payloads, seed)
    rt = Runtime(settings_for("text", work, "torch", batch_size, "cpu", traffic_window), [LABEL_QUEUE],
                 owns_index=True)
    rt.start()
    try:
        with rt.db.write() as session:
            report = import_labelled(session, rt.blobs, rt.settings, path)
        space = rt.labeller().space
        lifecycle.build(rt.db, space, rt.index, rt.blobs, rt.ocr)
        lifecycle.recalibrate_pretrained(rt.db, space, rt.index, rt.settings)
        model = rt.labeller().trigger.novelty_model
    finally:
        rt.stop()
        rt.index.client.close()
    reads = "no learned score" if model is None else ", ".join(model.features)
    console.print(f"{report.imported} labelled ads imported; the version's novelty score reads: {reads}")
    return reads


def accuracy(backend: str, work: Path, train: Path, test: Path, device: str) -> dict[str, Any]:
    from ctax.config import Settings
    from ctax.evaluation.run import EvalOptions, run_eval
    from tests.support import SHARED_DATA

    console.print(f"text: ctax eval with CTAX_BACKEND={backend} (pretrained version, Pitt split)...")
    base = Settings(_env_file=None, backend=backend, device=device, ocr_enabled=False)  # type: ignore[call-arg]
    result = run_eval(EvalOptions(SHARED_DATA / "pitt_ads_taxonomy.txt", train, test, 6, 0.2, 13, no_train=True,
                                  work_dir=work / f"eval-{backend}"), base)
    return {key: result.get(key) for key in ("top1", "novelty_auroc", "wrong_label_auroc", "seconds")}


def distinct_passes(n: int, seed: int, count: int = 5) -> list[list[str]]:
    """End to end's passes (the warm-up first) of `n` texts each, no text in two of them: the traffic window then
    fills with distinct creatives, as the service's does, not with copies that are each other's variants."""
    pool = texts(count * n, seed)
    return [pool[k * n : (k + 1) * n] for k in range(count)]


def run_mode(mode: str, args: argparse.Namespace, work: Path, split_files: tuple[Path, Path] | None
             ) -> list[dict[str, Any]]:
    n = args.n_text if mode == "text" else args.n_image
    payloads: list[Any] = texts(n, args.seed) if mode == "text" else images(n, args.seed)
    passes = None  # end to end's five passes (the warm-up first): the same payloads each time, unless distinct
    if args.distinct and mode == "text":
        passes = distinct_passes(n, args.seed)
        payloads = passes[0]
    names = [b for b in args.backends.split(",") if b != "torch"]
    if args.device.startswith("cuda"):
        import onnxruntime

        names = [b for b in names if not b.startswith("openvino")]  # OpenVINO runs on CPUs only
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            console.print("[yellow]onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu): the onnx "
                          "backends are left out on CUDA[/yellow]")
            names = [b for b in names if not b.startswith("onnx")]
    directory = make_version(mode, work, args.batch_size, args.device, payloads, names)
    if args.taxonomy:
        import_taxonomy(mode, work, args.batch_size, args.device)
    score = "no learned score"
    if args.labelled and mode == "text":
        score = import_labelled_examples(work, args.batch_size, args.traffic_window, args.labelled,
                                         [text for batch in passes or [payloads] for text in batch], args.seed)
    overrides = {"duplicate_groups": True} if args.duplicate_groups else {}
    if args.creatives and mode == "text":
        from bench import creatives_fill  # not at the top: it reads settings_for from here

        creatives_fill.fill_in_child(work, args.batch_size, args.creatives, args.seed, overrides)
    rows, reference = [], None
    for backend in ["torch", *names]:
        console.print(f"{mode}: {backend}: raw towers on {n} creatives, messages of {args.batch_size}...")
        towers = RawTowers(mode, directory, backend, payloads, args.batch_size, args.device)
        vectors = towers.measure()
        reference = vectors if reference is None else reference
        cosine = float(np.min(np.sum(vectors * reference, axis=1)))
        console.print(f"{mode}: {backend}: end to end through the labelling task...")
        pipelined, serial, served = end_to_end(mode, work, backend, payloads, args.batch_size, args.device,
                                               args.traffic_window, passes, **overrides)
        e2e = pipelined if served else serial
        # Raw again after end to end, the faster kept: both figures are then the best of passes spread over the
        # same minutes, so a shared machine's slow spell does not land on one side of the ratio only.
        towers.measure()
        per_s = towers.best
        del towers
        row: dict[str, Any] = {"backend": backend, "modality": mode, "raw_per_s": round(per_s, 2),
                               "end_to_end_per_s": round(e2e, 2), "label_pipeline": "on" if served else "off",
                               "end_to_end_pipelined_per_s": round(pipelined, 2),
                               "end_to_end_serial_per_s": round(serial, 2),
                               "cosine_to_torch": round(cosine, 6), "traffic_window": args.traffic_window,
                               "novelty_score_reads": score, "duplicate_groups": args.duplicate_groups,
                               "creatives": args.creatives if mode == "text" else 0,
                               "top1": None, "novelty_auroc": None, "wrong_label_auroc": None,
                               **gpu_memory(args.device)}
        if mode == "text" and split_files is not None:
            row |= accuracy(backend, work, *split_files, args.device)
        rows.append(row)
        console.print(row)
    return rows


def table(rows: list[dict[str, Any]]) -> Table:
    out = Table("creatives", "backend", "raw /s", "end to end /s", "e2e / raw", "as the task runs",
                "pipelined e2e / raw", "serial e2e / raw", "e2e vs torch", "cosine to torch", "top1", "novelty AUROC",
                "wrong-label AUROC")
    torch = {row["modality"]: row for row in rows if row["backend"] == "torch"}

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else "-"

    for row in rows:
        base = torch[row["modality"]]
        out.add_row(row["modality"], row["backend"], f"{row['raw_per_s']:.1f}", f"{row['end_to_end_per_s']:.1f}",
                    f"{row['end_to_end_per_s'] / row['raw_per_s']:.2f}",
                    "pipelined" if row["label_pipeline"] == "on" else "one after the other",
                    f"{row['end_to_end_pipelined_per_s'] / row['raw_per_s']:.2f}",
                    f"{row['end_to_end_serial_per_s'] / row['raw_per_s']:.2f}",
                    f"{row['end_to_end_per_s'] / base['end_to_end_per_s']:.2f}x", f"{row['cosine_to_torch']:.5f}",
                    *(cell(row[m]) for m in ("top1", "novelty_auroc", "wrong_label_auroc")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="text,image")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--n-text", type=int, default=1024)
    parser.add_argument("--n-image", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=WORKER_BATCH,
                        help="the worker's batch (CTAX_LABEL_BATCH_SIZE; default: the setting's default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CTAX_DEVICE)")
    parser.add_argument("--eval-train", type=int, default=0, help="subsample the Pitt TRAIN split (0: all of it)")
    parser.add_argument("--eval-test", type=int, default=0, help="subsample the Pitt TEST split (0: all of it)")
    parser.add_argument("--no-eval", action="store_true", help="skip `ctax eval` (accuracy) per backend")
    parser.add_argument("--taxonomy", action="store_true",
                        help="end to end with the Pitt taxonomy imported (default: no labels, all flagged new_label)")
    parser.add_argument("--traffic-window", type=int, default=0,
                        help="end to end with this novelty traffic window (CTAX_NOVELTY_TRAFFIC_WINDOW; the "
                             "service's default is 5000) and its sweep; 0: none kept")
    parser.add_argument("--labelled", type=int, default=0,
                        help="text: import this many labelled Pitt ads (none among the payloads) and calibrate the "
                             "version on them, as the service does after an import: its learned novelty score "
                             "then reads the traffic (needs --taxonomy and a --traffic-window to matter)")
    parser.add_argument("--distinct", action="store_true",
                        help="text: end to end posts other ads in each of its five passes (the traffic window "
                             "then holds distinct creatives, not five copies of each; raw times the first pass's)")
    parser.add_argument("--duplicate-groups", action="store_true",
                        help="end to end with near-duplicate groups on, as the service runs (no payload may then be "
                             "posted twice: needs --backends torch, --distinct and --modes text)")
    parser.add_argument("--creatives", type=int, default=0,
                        help="text: fill the version's creatives collection with this many labelled creatives first, "
                             "as a worker's after months of traffic (bench/creatives_fill.py)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 128 texts, 32 images, no eval")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.labelled and not args.taxonomy:
        parser.error("--labelled needs --taxonomy (labelled ads name the Pitt labels)")
    if args.duplicate_groups and (args.backends != "torch" or not args.distinct or "image" in args.modes.split(",")):
        parser.error("--duplicate-groups needs --backends torch, --distinct and --modes text: a second backend's "
                     "creatives, or a second pass of the same ads, would be exact copies, grouped unencoded")
    if args.quick:
        args.n_text, args.n_image, args.no_eval = 128, 32, True
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="ctax-backends-"))
    split_files = None
    if not args.no_eval and "text" in args.modes.split(","):
        train, test = split(13, out=work / "split")
        split_files = (subsample(train, args.eval_train, work / "split" / "train.jsonl"),
                       subsample(test, args.eval_test, work / "split" / "test.jsonl"))
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for mode in args.modes.split(","):
        rows += run_mode(mode, args, work, split_files)
    console.print(table(rows))
    console.print(f"{time.perf_counter() - started:.0f} s; work folder {work}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
