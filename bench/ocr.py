"""What OCR costs an image creative without text, beside the image tower, per OCR backend and engine layout, and
end to end through the service with OCR on and off.

    python -m bench.ocr                               # 96 rendered Pitt ads + 96 plain images, batches of 64;
                                                      # 192 rendered ads end to end
    python -m bench.ocr --n 64 --no-service --json ocr.json

Two image sets, JPEG-encoded as a client would post them: Pitt ads rendered by bench/render_ads.py (224 px; about
30% carry no legible text) and the plain 256 px images of bench.throughput (shapes, no text: rapidocr's detector
finds nothing and stops there). rapidocr scales an image whose shorter side is under 736 px up to 736 px before
detecting, so every small creative costs about the same. For each set, in batches of the worker's batch size:

* **today**: one onnxruntime engine with the library's default threads reading one image at a time (the labeller
  before OcrReader.read_many);
* each installed backend (onnxruntime, OpenVINO) in each layout `WxT` (W engines of T threads; T 0: the library's
  default) read with `OcrReader.read_many`; `same as today` is the share of images whose text is exactly today's,
  word recall the share of drawn words read (legible ads), false reads the share of ads without text where OCR read
  a 3+ letter word;
* the image tower (ViT-B-32, random weights: no pretrained CLIP here, and speed does not depend on the weights);
  `x tower` says how many image-tower encodes one OCR read costs;
* OCR (the fastest layout) then the tower per batch, as the labeller runs them (in turn), and overlapped (OCR in its
  pool while the tower encodes: what running them at once would gain, at the price of sharing the cores).

**End to end** (unless --no-service): the service (API + labelling worker, embedded profile, ViT-B-32 random image
tower) drains a full queue of the rendered ads, once with CTAX_OCR_ENABLED=false and once with OCR on
(CTAX_OCR_BACKEND=auto: the worker times the backends at start and says which it chose), the drain timed from the
creatives' own `labelled_at` stamps (bench.throughput's full-queue method). The towers run on torch there
(CTAX_BACKEND=torch), as in the rows above: this measures OCR, bench.backends the towers' backends.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from bench.render_ads import is_legible, render_ad_detailed, row_seed, word_recall
from bench.throughput import ADMIN, WORKER_BATCH, full_queue, import_taxonomy, post_all
from bench.throughput import images as plain_jpegs
from ctax.creatives.images import decode_rgb
from ctax.embedding.ocr import OcrReader, cpu_count, installed_backends
from ctax.embedding.space import IMAGE_PASS
from tests.support import SHARED_DATA, ServiceProcesses

console = Console(width=200)  # the table stays readable when the output is a file


def misread(text: str) -> bool:
    """A read of an image without text that the text tower would take for a word (3+ letters)."""
    return any(len(word) >= 3 for word in re.findall(r"[a-z]+", text.lower()))


def rendered_ads(n: int, seed: int) -> tuple[list[bytes], list[tuple[str, ...]]]:
    rows = [json.loads(line) for line in (SHARED_DATA / "pitt_ads_dev.jsonl").open()]
    out, drawn = [], []
    for row in random.Random(seed).sample(rows, n):
        ad = render_ad_detailed(row["texts"], row["label"], seed=row_seed(seed, str(row["id"])),
                                legible=is_legible(seed, str(row["id"])))
        buffer = io.BytesIO()
        ad.image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
        drawn.append(ad.drawn_text)
    return out, drawn


def timed(images: Sequence[Image.Image], batch_size: int, step: Callable[[list[Image.Image]], Any],
          label: str) -> tuple[float, list[Any]]:
    """Images per second of `step` over the images in batches (after one warm-up batch), and what it returned."""
    step(list(images[: min(8, batch_size)]))
    out: list[Any] = []
    start = time.perf_counter()
    for i in tqdm(range(0, len(images), batch_size), desc=label, unit="batch", leave=False):
        out += step(list(images[i : i + batch_size])) or []
    return len(images) / (time.perf_counter() - start), out


def quality(texts: Sequence[str], drawn: Sequence[tuple[str, ...]] | None, today: Sequence[str]
            ) -> dict[str, float | None]:
    same = sum(a == b for a, b in zip(texts, today, strict=True)) / len(texts)
    if drawn is None:
        return {"same_as_today": same, "word_recall": None, "false_read": sum(map(misread, texts)) / len(texts)}
    recalls = [word_recall(d, [t]) for d, t in zip(drawn, texts, strict=True) if d]
    blank = [t for d, t in zip(drawn, texts, strict=True) if not d]
    return {"same_as_today": same, "word_recall": sum(recalls) / max(1, len(recalls)),
            "false_read": sum(map(misread, blank)) / max(1, len(blank))}


def ocr_rows(name: str, images: list[Image.Image], drawn: list[tuple[str, ...]] | None, layouts: list[str],
             batch_size: int) -> list[dict[str, Any]]:
    today_reader = OcrReader("onnxruntime", workers=1, threads=0)
    per_s, today = timed(images, batch_size, lambda batch: [today_reader.read(i) for i in batch], f"{name} today")
    rows = [{"images": name, "what": "ocr", "backend": "onnxruntime", "layout": "1x0, one at a time (today)",
             "n": len(images), "per_s": per_s, **quality(today, drawn, today)}]
    for backend in installed_backends():
        for layout in layouts:
            workers, threads = (int(part) for part in layout.split("x"))
            reader = OcrReader(backend, workers=workers, threads=threads)
            per_s, texts = timed(images, batch_size, reader.read_many, f"{name} {backend} {layout}")
            reader.close()
            rows.append({"images": name, "what": "ocr", "backend": backend, "layout": f"{layout}, read_many",
                         "n": len(images), "per_s": per_s, "workers": workers, "threads": threads,
                         **quality(texts, drawn, today)})
    return rows


def tower_rows(name: str, images: list[Image.Image], best: dict[str, Any], batch_size: int) -> list[dict[str, Any]]:
    """The image tower alone, then OCR (the fastest layout) and the tower per batch: in turn, and overlapped."""
    import torch

    from ctax.embedding.image import ImageEncoder

    torch.set_num_threads(cpu_count())
    tower = ImageEncoder.load("ViT-B-32", None, dim=384)

    def encode(batch: list[Image.Image]) -> None:  # a message, in the tower's own passes as the worker runs it
        tower.encode(batch, batch_size=IMAGE_PASS)

    per_s, _ = timed(images, batch_size, encode, f"{name} tower")
    rows = [{"images": name, "what": "image tower", "backend": "torch", "layout": "ViT-B-32", "n": len(images),
             "per_s": per_s}]
    reader = OcrReader(best["backend"], workers=best["workers"], threads=best["threads"])

    def in_turn(batch: list[Image.Image]) -> None:
        reader.read_many(batch)
        encode(batch)

    def overlapped(batch: list[Image.Image]) -> None:
        ocr = threading.Thread(target=reader.read_many, args=(batch,))
        ocr.start()
        encode(batch)
        ocr.join()

    for mode, step in (("in turn", in_turn), ("overlapped", overlapped)):
        per_s, _ = timed(images, batch_size, step, f"{name} ocr + tower {mode}")
        rows.append({"images": name, "what": "ocr + image tower", "backend": best["backend"],
                     "layout": f"{best['workers']}x{best['threads']}, {mode}", "n": len(images), "per_s": per_s})
    reader.close()
    return rows


def service_rows(payloads: list[bytes], batch_size: int, work: Path) -> list[dict[str, Any]]:
    """The labelling service draining a full queue of image-only creatives, OCR off then on."""
    rows = []
    for ocr in ("off", "on"):
        env = {"CTAX_DATA_DIR": str(work / ocr / "var"), "CTAX_BOOTSTRAP_ADMIN_KEY": ADMIN, "HF_HUB_OFFLINE": "1",
               "CTAX_LABEL_BATCH_SIZE": str(batch_size), "CTAX_IMAGE_ARCH": "ViT-B-32",
               "CTAX_IMAGE_PRETRAINED": "none", "CTAX_IMAGE_PROJECTION": "random",
               "CTAX_OCR_ENABLED": str(ocr == "on").lower(), "CTAX_OCR_BACKEND": "auto",
               "CTAX_BACKEND": "torch"}  # torch towers, as in the rows above: OCR's cost, not the towers' backends
        service = ServiceProcesses(env, work / ocr / "logs")
        console.print(f"end to end, OCR {ocr}: starting the service (API + labelling worker)...")
        service.start(timeout=900)
        try:
            import_taxonomy(service)
            post_all(service, "image", payloads[: min(8, batch_size)], "batch", 1, batch_size)  # lazy imports
            per_s, seconds = full_queue(service, "image", payloads, batch_size)
        finally:
            service.stop()
        said = re.findall(r"OCR: (.*)", (work / ocr / "logs" / "worker-label.log").read_text(errors="replace"))
        rows.append({"images": "rendered ads", "what": f"end to end, OCR {ocr}",
                     "backend": said[-1].split(",")[0] if said else "-", "worker_said": said[-1] if said else None,
                     "layout": "service, full queue", "n": len(payloads), "per_s": per_s, "seconds": seconds})
        if said:
            console.print(f"the worker said: OCR: {said[-1]}")
    return rows


def add_cost(rows: list[dict[str, Any]]) -> None:
    """`x_tower`: image-tower encodes one OCR read costs, on the same images in the same run."""
    towers = {row["images"]: row["per_s"] for row in rows if row["what"] == "image tower"}
    for row in rows:
        if row["images"] in towers:
            row["x_tower"] = towers[row["images"]] / row["per_s"]


def print_table(rows: list[dict[str, Any]]) -> None:
    def figure(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    table = Table("images", "what", "backend", "layout", "N", "creatives/s", "x tower", "same as today",
                  "word recall", "false reads")
    for row in rows:
        table.add_row(row["images"], row["what"], row["backend"], row["layout"], str(row["n"]),
                      f"{row['per_s']:.2f}", figure(row.get("x_tower"), ".2f"), figure(row.get("same_as_today"), ".3f"),
                      figure(row.get("word_recall"), ".3f"), figure(row.get("false_read"), ".3f"))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=96, help="images per set")
    parser.add_argument("--batch-size", type=int, default=WORKER_BATCH,
                        help="the worker's label_batch_size (default: the setting's default)")
    parser.add_argument("--layouts", default=f"1x0,1x1,{cpu_count()}x1",
                        help="engine layouts WxT: W engines of T threads each (0: the library's default)")
    parser.add_argument("--sets", default="rendered ads,plain", help="image sets: rendered ads, plain")
    parser.add_argument("--no-tower", action="store_true", help="skip the image tower rows")
    parser.add_argument("--no-service", action="store_true", help="skip the end-to-end rows")
    parser.add_argument("--n-service", type=int, default=192,
                        help="rendered ads drained end to end (enough batches: the drain is timed between them)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    ads, drawn = rendered_ads(max(args.n, args.n_service), args.seed)
    sets = {"rendered ads": (ads[: args.n], drawn[: args.n]), "plain": (plain_jpegs(args.n, args.seed), None)}
    rows: list[dict[str, Any]] = []
    for name in filter(None, args.sets.split(",")):
        payloads, words = sets[name]
        images = [decode_rgb(data) for data in payloads]
        console.print(f"[bold]{name}[/bold]: {len(images)} images, batches of {args.batch_size}, {cpu_count()} cores")
        found = ocr_rows(name, images, words, args.layouts.split(","), args.batch_size)
        rows += found
        best = max((row for row in found if "workers" in row), key=lambda row: row["per_s"])
        console.print(f"{name}: fastest is {best['backend']} {best['layout']} ({best['per_s']:.2f}/s)")
        if not args.no_tower:
            rows += tower_rows(name, images, best, args.batch_size)
    if not args.no_service:
        work = Path(tempfile.mkdtemp(prefix="ctax-bench-ocr-"))
        rows += service_rows(ads[: args.n_service], args.batch_size, work)
    add_cost(rows)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
