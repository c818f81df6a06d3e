"""Train the image tower into the shared space: images are pulled to their label's text-tower vector.

The loss is CLIP's, with the label vectors as the "text" side: cross-entropy over the temperature-scaled
cosine similarities between each image's projected vector and every label vector (so the other labels are the
negatives), optionally plus CLIP's in-batch image<->own-text term when the images' texts are known.

The loop is written by hand on purpose: sentence-transformers trains text models, open_clip's trainer trains
both of its own towers against each other, and neither trains an open_clip visual tower into a frozen
sentence-transformers space with fixed label targets. What a library would add (schedulers, clipping,
progress) is a few lines here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from ctax.embedding.image import ImageEncoder

ProgressCallback = Callable[[float, str], None]

# Training views are random crops of an image resized a bit larger than the tower's input, so the inference
# view (a centre crop at exactly the input size) lies inside the range of what training saw.
_MARGIN = 1.15
_CROP_SCALE = (0.6, 1.0)
_CROP_RATIO = (0.85, 1.18)
# Hue is a real cue in ads (brand colours), so colour augmentation stays at brightness/contrast only.
_BRIGHTNESS = 0.15
_CONTRAST = 0.15


def train_image_tower(
    encoder: ImageEncoder,
    images: Sequence[Image.Image] | Sequence[Path],
    targets: np.ndarray,
    label_vectors: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    train_tower: bool,
    lr: float = 1e-3,
    on_progress: ProgressCallback | None = None,
    text_vectors: np.ndarray | None = None,
    text_weight: float = 0.5,
    temperature: float = 0.05,
    tower_lr: float | None = None,
    weight_decay: float = 0.05,
    frozen_views: int = 4,
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Train ``encoder`` in place; returns metrics.

    ``targets``: one label index per image (shape ``(n,)``) into the rows of ``label_vectors``, or soft
    targets of shape ``(n, n_labels)`` whose rows sum to 1 (see :func:`hierarchy_targets`).
    ``label_vectors``: the text tower's vectors of the label strings, ``(n_labels, dim)``.
    ``text_vectors``: optional text-tower vectors of each image's own text ``(n, dim)``; an all-zero row
    means "no text" and is left out of that term.
    ``train_tower``: also update the visual tower (else only the projection, over features computed once
    for ``frozen_views`` views of each image: the clean view plus random augmentations).
    ``tower_lr``: defaults to ``lr`` for a randomly initialised tower and ``lr / 10`` for a pretrained one,
    whose features are worth keeping.
    """
    import torch
    from tqdm import tqdm

    started = time.perf_counter()
    n = len(images)
    soft = _soft_targets(targets, n, len(label_vectors))
    if text_vectors is not None and len(text_vectors) != n:
        raise ValueError(f"text_vectors has {len(text_vectors)} rows for {n} images")
    if n == 0:
        raise ValueError("no training images")
    if label_vectors.ndim != 2 or label_vectors.shape[1] != encoder.dim:
        raise ValueError(f"label_vectors must be (n_labels, {encoder.dim}), got {label_vectors.shape}")

    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = encoder.device
    labels_t = torch.nn.functional.normalize(torch.as_tensor(label_vectors, dtype=torch.float32), dim=-1)
    labels_t = labels_t.to(device)
    soft_t = torch.as_tensor(soft, dtype=torch.float32)
    hard_t = soft_t.argmax(dim=1)
    texts_t = None if text_vectors is None else torch.as_tensor(text_vectors, dtype=torch.float32)

    def report(fraction: float, message: str) -> None:
        if on_progress is not None:
            on_progress(min(max(fraction, 0.0), 1.0), message)

    report(0.0, f"preparing {n} images")
    pixels = _prepare_pixels(images, encoder.image_size)
    mean = torch.tensor(encoder.preprocess_cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(encoder.preprocess_cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)

    def batch_pixels(index: torch.Tensor, augment: bool) -> torch.Tensor:
        batch = _views(pixels[index], encoder.image_size, rng, augment)
        return ((batch - mean) / std).to(device)

    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = max(1, epochs * steps_per_epoch)
    if tower_lr is None:
        tower_lr = lr if not encoder.pretrained else lr / 10
    groups: list[dict[str, Any]] = [
        {"params": list(encoder.projection.parameters()), "lr": lr, "weight_decay": 0.0}
    ]
    if train_tower:
        for parameter in encoder.visual.parameters():
            parameter.requires_grad_(True)
        tower_params = list(encoder.visual.parameters())
        groups.append({"params": tower_params, "lr": tower_lr, "weight_decay": weight_decay})
    optimizer = torch.optim.AdamW(groups)
    base_lrs = [group["lr"] for group in groups]
    warmup = max(1, total_steps // 20)

    def set_lr(step: int) -> None:
        # Linear warm-up then cosine decay: the usual recipe for ViTs, and harmless for a lone projection.
        factor = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * step / total_steps))
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor

    features: torch.Tensor | None = None
    offset = 0.0  # share of the progress bar spent before the epochs (feature caching)
    if not train_tower:
        offset = 0.3
        # The frozen tower's output does not change, so each view is encoded once instead of every epoch.
        encoder.visual.eval()
        features = _frozen_features(encoder, n, batch_size, frozen_views, batch_pixels, report, progress_bar)

    def loss_and_logits(index: torch.Tensor, augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if features is None:
            vectors = encoder.forward(batch_pixels(index, augment))
        else:
            view = torch.randint(0, features.shape[0], (len(index),), generator=generator)
            projected = encoder.projection(features[view, index].to(device))
            vectors = torch.nn.functional.normalize(projected, dim=-1)
        logits = vectors @ labels_t.T / temperature
        loss = -(soft_t[index].to(device) * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        if texts_t is not None:
            own = texts_t[index].to(device)
            present = own.norm(dim=-1) > 0
            if int(present.sum()) >= 2:
                # CLIP's symmetric in-batch loss between images and their own texts.
                own = torch.nn.functional.normalize(own[present], dim=-1)
                pair_logits = vectors[present] @ own.T / temperature
                target = torch.arange(len(own), device=device)
                pair_loss = 0.5 * (
                    torch.nn.functional.cross_entropy(pair_logits, target)
                    + torch.nn.functional.cross_entropy(pair_logits.T, target)
                )
                loss = loss + text_weight * pair_loss
        return loss, logits

    encoder.projection.train()
    if train_tower:
        encoder.visual.train()
    epoch_losses: list[float] = []
    last_correct = 0
    step = 0
    bar = tqdm(total=total_steps, desc="image tower", unit="step", disable=not progress_bar, mininterval=2)
    report_every = max(1, total_steps // 100)
    try:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            loss_sum, correct = 0.0, 0
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                set_lr(step)
                loss, logits = loss_and_logits(index, augment=True)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], max_norm=1.0)
                optimizer.step()
                loss_sum += float(loss.detach()) * len(index)
                correct += int((logits.detach().argmax(dim=1).cpu() == hard_t[index]).sum())
                step += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.3f}", refresh=False)
                if step % report_every == 0:
                    message = f"epoch {epoch + 1}/{epochs} loss {float(loss.detach()):.3f}"
                    report(offset + (1 - offset) * step / total_steps, message)
            epoch_losses.append(loss_sum / n)
            last_correct = correct
    finally:
        bar.close()
        encoder.visual.eval()
        encoder.projection.eval()
    if train_tower:
        encoder.tower_trained = True
    seconds = time.perf_counter() - started
    report(1.0, f"trained in {seconds:.0f}s")
    return {
        "n_images": n,
        "n_labels": len(label_vectors),
        "epochs": epochs,
        "steps": step,
        "batch_size": batch_size,
        "train_tower": train_tower,
        "lr": lr,
        "tower_lr": tower_lr if train_tower else None,
        "temperature": temperature,
        "text_alignment": text_vectors is not None,
        "loss_first_epoch": epoch_losses[0] if epoch_losses else None,
        "loss_last_epoch": epoch_losses[-1] if epoch_losses else None,
        "train_top1_last_epoch": last_correct / n if epoch_losses else None,
        "seconds": seconds,
    }


def hierarchy_targets(
    label_paths: Sequence[str], targets: np.ndarray, *, ancestor_mass: float = 0.2, sibling_mass: float = 0.0
) -> np.ndarray:
    """Soft targets that keep a child's images near its branch.

    ``ancestor_mass`` is shared among the target's ancestors that are labels themselves ("Product/Vehicles"
    for "Product/Vehicles/Cars"); ``sibling_mass`` among labels with the same parent path, for label sets
    that hold only leaves. Mass with nowhere to go stays on the target.
    """
    paths = list(label_paths)
    index = {path: i for i, path in enumerate(paths)}
    parent = [path.rsplit("/", 1)[0] if "/" in path else "" for path in paths]
    out = np.zeros((len(targets), len(paths)), dtype=np.float32)
    for row, target in enumerate(np.asarray(targets, dtype=np.int64)):
        path = paths[target]
        parts = path.split("/")
        ancestors = [index[a] for a in ("/".join(parts[:k]) for k in range(1, len(parts))) if a in index]
        siblings = [i for i, p in enumerate(parent) if p and p == parent[target] and i != target]
        keep = 1.0
        if ancestors and ancestor_mass > 0:
            out[row, ancestors] += ancestor_mass / len(ancestors)
            keep -= ancestor_mass
        if siblings and sibling_mass > 0:
            out[row, siblings] += sibling_mass / len(siblings)
            keep -= sibling_mass
        out[row, target] += keep
    return out


def _soft_targets(targets: np.ndarray, n: int, n_labels: int) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim == 1:
        if len(targets) != n:
            raise ValueError(f"{len(targets)} targets for {n} images")
        if n and (targets.min() < 0 or targets.max() >= n_labels):
            raise ValueError(f"target index out of range for {n_labels} labels")
        soft = np.zeros((n, n_labels), dtype=np.float32)
        soft[np.arange(n), targets.astype(np.int64)] = 1.0
        return soft
    if targets.shape != (n, n_labels):
        raise ValueError(f"soft targets must be ({n}, {n_labels}), got {targets.shape}")
    if not np.allclose(targets.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("soft target rows must sum to 1")
    return targets.astype(np.float32)


def _prepare_pixels(images: Sequence[Image.Image] | Sequence[Path], size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(n, 3, H', W')`` at ``_MARGIN`` times the input size, decoded once for all epochs."""
    import torch
    from PIL import Image

    height, width = (round(size[0] * _MARGIN), round(size[1] * _MARGIN))
    out = torch.empty((len(images), 3, height, width), dtype=torch.uint8)
    for i, item in enumerate(images):
        image = Image.open(item) if isinstance(item, (str, Path)) else item
        image = image.convert("RGB")
        # Shortest side to the target then centre crop: the inference preprocessing, with a margin.
        scale = max(height / image.height, width / image.width)
        resized = image.resize(
            (max(width, round(image.width * scale)), max(height, round(image.height * scale))),
            Image.Resampling.BICUBIC,
        )
        left, top = (resized.width - width) // 2, (resized.height - height) // 2
        crop = resized.crop((left, top, left + width, top + height))
        out[i] = torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1)
    return out


def _views(
    batch: torch.Tensor, size: tuple[int, int], rng: np.random.Generator, augment: bool
) -> torch.Tensor:
    """Float ``(b, 3, H, W)`` in [0, 1]: random resized crops with light photometric jitter, or the centre."""
    import torch
    from torchvision.transforms.v2 import functional as F

    _, _, height, width = batch.shape
    views = []
    for image in batch:
        if augment:
            area = height * width * rng.uniform(*_CROP_SCALE)
            ratio = math.exp(rng.uniform(math.log(_CROP_RATIO[0]), math.log(_CROP_RATIO[1])))
            h = min(height, round(math.sqrt(area / ratio)))
            w = min(width, round(math.sqrt(area * ratio)))
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
        else:
            h, w = size
            top, left = (height - h) // 2, (width - w) // 2
        views.append(F.resized_crop(image, top, left, h, w, list(size), antialias=True))
    out = torch.stack(views).float() / 255.0
    if augment:
        b = len(out)
        brightness = torch.as_tensor(rng.uniform(1 - _BRIGHTNESS, 1 + _BRIGHTNESS, b), dtype=torch.float32)
        contrast = torch.as_tensor(rng.uniform(1 - _CONTRAST, 1 + _CONTRAST, b), dtype=torch.float32)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * contrast.view(b, 1, 1, 1) + mean) * brightness.view(b, 1, 1, 1)
        out = out.clamp(0.0, 1.0)
    return out


def _frozen_features(
    encoder: ImageEncoder,
    n: int,
    batch_size: int,
    views: int,
    batch_pixels: Callable[[torch.Tensor, bool], torch.Tensor],
    report: ProgressCallback,
    progress_bar: bool,
) -> torch.Tensor:
    """``(views, n, embed_dim)`` tower outputs: view 0 is the clean centre crop, the rest augmented."""
    import torch
    from tqdm import tqdm

    views = max(1, views)
    out = torch.empty((views, n, encoder.embed_dim), dtype=torch.float32)
    total = views * math.ceil(n / batch_size)
    done = 0
    with torch.inference_mode(), tqdm(total=total, desc="tower features", disable=not progress_bar) as bar:
        for view in range(views):
            for start in range(0, n, batch_size):
                index = torch.arange(start, min(n, start + batch_size))
                features = encoder.visual(batch_pixels(index, view > 0))
                if isinstance(features, tuple):
                    features = features[0]
                out[view, index] = features.float().cpu()
                done += 1
                bar.update(1)
                report(0.3 * done / total, f"tower features {done}/{total}")
    return out
