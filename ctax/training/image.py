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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctax.training.image_data import (
    FEATURE_SHARE,
    BatchPixels,
    ProgressCallback,
    frozen_features,
    prepare_pixels,
    soft_targets,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from ctax.embedding.image import ImageEncoder

@dataclass(frozen=True)
class ImageTrainingRecipe:
    """How to train the image tower.

    ``train_tower``: also update the visual tower (else only the projection, over features computed once
    for ``frozen_views`` views of each image: the clean view plus random augmentations).
    ``tower_lr``: defaults to ``lr`` for a randomly initialised tower and ``lr / 10`` for a pretrained one,
    whose features are worth keeping.
    ``text_weight``: the weight of CLIP's in-batch image<->own-text term, where the images' texts are known.
    """

    epochs: int
    batch_size: int
    seed: int
    train_tower: bool
    lr: float = 1e-3
    text_weight: float = 0.5
    temperature: float = 0.05
    tower_lr: float | None = None
    weight_decay: float = 0.05
    frozen_views: int = 4

    def tower_lr_for(self, encoder: ImageEncoder) -> float:
        if self.tower_lr is not None:
            return self.tower_lr
        return self.lr if not encoder.pretrained else self.lr / 10


def train_image_tower(
    encoder: ImageEncoder,
    images: Sequence[Image.Image] | Sequence[Path],
    targets: np.ndarray,
    label_vectors: np.ndarray,
    recipe: ImageTrainingRecipe,
    *,
    text_vectors: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
    progress_bar: bool = True,
    on_step: Callable[[int, int, float | None], None] | None = None,
) -> dict[str, Any]:
    """Train ``encoder`` in place; returns metrics.

    ``targets``: one label index per image (shape ``(n,)``) into the rows of ``label_vectors``, or soft
    targets of shape ``(n, n_labels)`` whose rows sum to 1 (see :func:`image_data.hierarchy_targets`).
    ``label_vectors``: the text tower's vectors of the label strings, ``(n_labels, dim)``.
    ``text_vectors``: optional text-tower vectors of each image's own text ``(n, dim)``; an all-zero row
    means "no text" and is left out of that term.
    """
    import torch

    started = time.perf_counter()
    n = len(images)
    soft = _checked_targets(encoder, n, targets, label_vectors, text_vectors)
    generator = torch.Generator().manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    report = _clamped(on_progress)
    report(0.0, f"preparing {n} images")
    pixels = BatchPixels(encoder, prepare_pixels(images, encoder.image_size), rng)
    total_steps = max(1, recipe.epochs * math.ceil(n / recipe.batch_size))
    optimizer = _Optimizer(encoder, recipe, total_steps)
    features: torch.Tensor | None = None
    offset = 0.0
    if not recipe.train_tower:
        offset = FEATURE_SHARE
        # The frozen tower's output does not change, so each view is encoded once instead of every epoch.
        encoder.visual.eval()
        features = frozen_features(encoder, n, recipe.batch_size, recipe.frozen_views, pixels, report, progress_bar)
    objective = _Objective(encoder, recipe, label_vectors, soft, text_vectors, pixels, features, generator)
    epochs = _train_epochs(encoder, objective, optimizer, recipe, n, generator,
                           lambda step, message: report(offset + (1 - offset) * step / total_steps, message),
                           progress_bar, on_step)
    seconds = time.perf_counter() - started
    report(1.0, f"trained in {seconds:.0f}s")
    return {
        "n_images": n,
        "n_labels": len(label_vectors),
        "epochs": recipe.epochs,
        "steps": epochs.steps,
        "batch_size": recipe.batch_size,
        "train_tower": recipe.train_tower,
        "lr": recipe.lr,
        "tower_lr": optimizer.tower_lr if recipe.train_tower else None,
        "temperature": recipe.temperature,
        "text_alignment": text_vectors is not None,
        **epochs.figures(n),
        "seconds": seconds,
    }


def _clamped(on_progress: ProgressCallback | None) -> ProgressCallback:
    def report(fraction: float, message: str) -> None:
        if on_progress is not None:
            on_progress(min(max(fraction, 0.0), 1.0), message)

    return report


def _checked_targets(
    encoder: ImageEncoder, n: int, targets: np.ndarray, label_vectors: np.ndarray, text_vectors: np.ndarray | None
) -> np.ndarray:
    """The soft targets, after checking that every input has the shape the others imply."""
    soft = soft_targets(targets, n, len(label_vectors))
    if text_vectors is not None and len(text_vectors) != n:
        raise ValueError(f"text_vectors has {len(text_vectors)} rows for {n} images")
    if n == 0:
        raise ValueError("no training images")
    if label_vectors.ndim != 2 or label_vectors.shape[1] != encoder.dim:
        raise ValueError(f"label_vectors must be (n_labels, {encoder.dim}), got {label_vectors.shape}")
    return soft


class _Optimizer:
    """AdamW over the projection (and the tower when it trains), with linear warm-up then cosine decay: the usual
    recipe for ViTs, and harmless for a lone projection."""

    def __init__(self, encoder: ImageEncoder, recipe: ImageTrainingRecipe, total_steps: int) -> None:
        import torch

        self.tower_lr = recipe.tower_lr_for(encoder)
        self.groups: list[dict[str, Any]] = [
            {"params": list(encoder.projection.parameters()), "lr": recipe.lr, "weight_decay": 0.0}
        ]
        if recipe.train_tower:
            for parameter in encoder.visual.parameters():
                parameter.requires_grad_(True)
            tower_params = list(encoder.visual.parameters())
            self.groups.append({"params": tower_params, "lr": self.tower_lr, "weight_decay": recipe.weight_decay})
        self.optimizer = torch.optim.AdamW(self.groups)
        self.base_lrs = [group["lr"] for group in self.groups]
        self.total_steps = total_steps
        self.warmup = max(1, total_steps // 20)

    def step(self, step: int, loss: torch.Tensor) -> None:
        import torch

        if step < self.warmup:
            factor = (step + 1) / self.warmup
        else:
            factor = 0.5 * (1 + math.cos(math.pi * step / self.total_steps))
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_([p for g in self.groups for p in g["params"]], max_norm=1.0)
        self.optimizer.step()


class _Objective:
    """The loss of a batch: cross-entropy of the temperature-scaled cosines to every label vector against the soft
    targets, plus CLIP's symmetric in-batch loss between images and their own texts where texts are known."""

    def __init__(
        self, encoder: ImageEncoder, recipe: ImageTrainingRecipe, label_vectors: np.ndarray, soft: np.ndarray,
        text_vectors: np.ndarray | None, pixels: BatchPixels, features: torch.Tensor | None,
        generator: torch.Generator,
    ) -> None:
        import torch

        self.encoder, self.recipe, self.pixels, self.features, self.generator = (
            encoder, recipe, pixels, features, generator)
        self.device = encoder.device
        labels = torch.nn.functional.normalize(torch.as_tensor(label_vectors, dtype=torch.float32), dim=-1)
        self.labels = labels.to(self.device)
        self.soft = torch.as_tensor(soft, dtype=torch.float32)
        self.hard = self.soft.argmax(dim=1)
        self.texts = None if text_vectors is None else torch.as_tensor(text_vectors, dtype=torch.float32)

    def vectors(self, index: torch.Tensor, augment: bool) -> torch.Tensor:
        """Shared-space vectors of a batch: through the tower, or from a random cached view of a frozen one."""
        import torch

        if self.features is None:
            return self.encoder.forward(self.pixels(index, augment))
        view = torch.randint(0, self.features.shape[0], (len(index),), generator=self.generator)
        projected = self.encoder.projection(self.features[view, index].to(self.device))
        return torch.nn.functional.normalize(projected, dim=-1)

    def __call__(self, index: torch.Tensor, augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        vectors = self.vectors(index, augment)
        logits = vectors @ self.labels.T / self.recipe.temperature
        loss = -(self.soft[index].to(self.device) * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        if self.texts is not None:
            own = self.texts[index].to(self.device)
            present = own.norm(dim=-1) > 0
            if int(present.sum()) >= 2:
                own = torch.nn.functional.normalize(own[present], dim=-1)
                pair_logits = vectors[present] @ own.T / self.recipe.temperature
                target = torch.arange(len(own), device=self.device)
                pair_loss = 0.5 * (
                    torch.nn.functional.cross_entropy(pair_logits, target)
                    + torch.nn.functional.cross_entropy(pair_logits.T, target)
                )
                loss = loss + self.recipe.text_weight * pair_loss
        return loss, logits


@dataclass
class _Epochs:
    losses: list[float]  # mean loss of each epoch
    last_correct: int  # training images whose top label was right in the last epoch
    steps: int

    def figures(self, n: int) -> dict[str, float | None]:
        return {
            "loss_first_epoch": self.losses[0] if self.losses else None,
            "loss_last_epoch": self.losses[-1] if self.losses else None,
            "train_top1_last_epoch": self.last_correct / n if self.losses else None,
        }


def _train_epochs(
    encoder: ImageEncoder, objective: _Objective, optimizer: _Optimizer, recipe: ImageTrainingRecipe, n: int,
    generator: torch.Generator, report: Callable[[int, str], None], progress_bar: bool,
    on_step: Callable[[int, int, float | None], None] | None = None,
) -> _Epochs:
    """The epochs: a fresh order of the images each, one optimiser step per batch; leaves the encoder in eval mode
    (and marked trained when its tower was)."""
    import torch
    from tqdm import tqdm

    encoder.projection.train()
    if recipe.train_tower:
        encoder.visual.train()
    done = _Epochs([], 0, 0)
    bar = tqdm(total=optimizer.total_steps, desc="image tower", unit="step", disable=not progress_bar,
               mininterval=2)
    report_every = max(1, optimizer.total_steps // 100)
    try:
        for epoch in range(recipe.epochs):
            order = torch.randperm(n, generator=generator)
            loss_sum, correct = 0.0, 0
            for start in range(0, n, recipe.batch_size):
                index = order[start : start + recipe.batch_size]
                loss, logits = objective(index, augment=True)
                optimizer.step(done.steps, loss)
                loss_sum += float(loss.detach()) * len(index)
                correct += int((logits.detach().argmax(dim=1).cpu() == objective.hard[index]).sum())
                done.steps += 1
                if on_step is not None:  # the run's step, loss and time left (ctax/training/progress.py)
                    on_step(done.steps, optimizer.total_steps, float(loss.detach()))
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.3f}", refresh=False)
                if done.steps % report_every == 0:
                    report(done.steps, f"epoch {epoch + 1}/{recipe.epochs} loss {float(loss.detach()):.3f}")
            done.losses.append(loss_sum / n)
            done.last_correct = correct
    finally:
        bar.close()
        encoder.visual.eval()
        encoder.projection.eval()
    if recipe.train_tower:
        encoder.tower_trained = True
    return done
