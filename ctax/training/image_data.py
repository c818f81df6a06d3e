"""What the image tower trains on: soft targets over the label tree, pixels decoded once for all epochs, the
augmented views of each batch, and the frozen tower's features cached per view.

Every random draw (crops, jitter) comes from the numpy generator the caller passes, in batch order, so a run's
views depend only on its seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from ctax.embedding.image import ImageEncoder

ProgressCallback = Callable[[float, str], None]

# The share of the progress bar spent caching a frozen tower's features, before the epochs.
FEATURE_SHARE = 0.3

# Training views are random crops of an image resized a bit larger than the tower's input, so the inference
# view (a centre crop at exactly the input size) lies inside the range of what training saw.
_MARGIN = 1.15
_CROP_SCALE = (0.6, 1.0)
_CROP_RATIO = (0.85, 1.18)
# Hue is a real cue in ads (brand colours), so colour augmentation stays at brightness/contrast only.
_BRIGHTNESS = 0.15
_CONTRAST = 0.15


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


def soft_targets(targets: np.ndarray, n: int, n_labels: int) -> np.ndarray:
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


def prepare_pixels(images: Sequence[Image.Image] | Sequence[Path], size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(n, 3, H', W')`` at ``_MARGIN`` times the input size, decoded once for all epochs."""
    import torch
    from PIL import Image

    height, width = (round(size[0] * _MARGIN), round(size[1] * _MARGIN))
    out = torch.empty((len(images), 3, height, width), dtype=torch.uint8)
    items: Sequence[Image.Image | Path] = images
    for i, item in enumerate(items):
        image = (Image.open(item) if isinstance(item, (str, Path)) else item).convert("RGB")
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


def crop_views(
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


class BatchPixels:
    """Normalised pixels of a batch on the encoder's device: augmented views, or the clean centre crop."""

    def __init__(self, encoder: ImageEncoder, pixels: torch.Tensor, rng: np.random.Generator) -> None:
        import torch

        self.encoder, self.pixels, self.rng = encoder, pixels, rng
        self.mean = torch.tensor(encoder.preprocess_cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(encoder.preprocess_cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, index: torch.Tensor, augment: bool) -> torch.Tensor:
        batch = crop_views(self.pixels[index], self.encoder.image_size, self.rng, augment)
        return ((batch - self.mean) / self.std).to(self.encoder.device)


def frozen_features(
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
                report(FEATURE_SHARE * done / total, f"tower features {done}/{total}")
    return out
