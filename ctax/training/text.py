"""Fine-tuning the text tower so that creatives and label phrases share one embedding space.

The recipe (loss, negatives, learning rate, template) was chosen by measurement: see text_recipe.py,
``docs/text_training_study.md`` and ``bench/text_training_study.py``, which reproduces every figure; the rows
it trains on are built in text_data.py. Nothing here loads a model at import time; torch and
sentence-transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ctax.training.text_data import Example, build_training_datasets, check_trainable
from ctax.training.text_recipe import DEFAULT_RECIPE, TextTrainingRecipe

ProgressFn = Callable[[float, str], None]
LOSS_HISTORY = "loss_history.json"  # beside the saved tower: [{"step", "loss"}] as the trainer logged them
StepFn = Callable[[int, int, float | None], None]  # after each optimiser step: step, total steps, last logged loss


def _make_losses(model: Any, recipe: TextTrainingRecipe, names: Sequence[str]) -> dict[str, Any]:
    from sentence_transformers.sentence_transformer.losses import (
        CoSENTLoss,
        CosineSimilarityLoss,
        MultipleNegativesRankingLoss,
    )

    losses: dict[str, Any] = {}
    for name in names:
        if name.startswith("pairs"):
            losses[name] = MultipleNegativesRankingLoss(model, scale=recipe.scale)
        elif recipe.loss == "cosine":
            losses[name] = CosineSimilarityLoss(model)
        else:
            losses[name] = CoSENTLoss(model, scale=recipe.scale)
    return losses


def _progress_callback(on_progress: ProgressFn, on_step: StepFn | None) -> Any:
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        last_loss: float | None = None

        # Training is most of the work; the last 5% are left for saving the model.
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            on_progress(0.0, "training" if on_step is not None else f"training: 0/{state.max_steps} steps")

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if logs and "loss" in logs:
                self.last_loss = float(logs["loss"])
                if on_step is not None:  # the trainer logs after on_step_end: the step's loss, as soon as known
                    on_step(min(int(state.global_step), int(state.max_steps)), int(state.max_steps), self.last_loss)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            total = max(int(state.max_steps), 1)
            done = min(int(state.global_step), total)
            if on_step is None:
                loss = "" if self.last_loss is None else f", loss {self.last_loss:.3f}"
                on_progress(0.95 * done / total, f"training: {done}/{total} steps{loss}")
                return
            # The step, total and loss are the report's own fields then; the sentence repeating them went out one
            # report apart from them (the run's row read "training: 3/20 steps" beside step 2).
            on_step(done, total, self.last_loss)
            on_progress(0.95 * done / total, "training")

    return _Progress()


def train_text_tower(
    base_model: str,
    examples: Sequence[Example],
    label_phrases: Mapping[str, str],
    parent_of: Mapping[str, str | None],
    out_dir: Path,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    device: str = "cpu",
    on_progress: ProgressFn | None = None,
    recipe: TextTrainingRecipe = DEFAULT_RECIPE,
    on_step: StepFn | None = None,
) -> Path:
    """Fine-tune a sentence-transformers text tower on (creative texts, label path) examples; return ``out_dir``.

    ``examples``: the texts of one creative with its label path (a leaf or a parent). ``label_phrases``: every
    label path (leaves and parents) to the string the tower encodes for it, e.g. via ``LabelPath.phrase``.
    ``parent_of``: each label path's parent path, ``None`` at the top. Raises ValueError when the examples are too
    few to train on (see :func:`check_trainable`) or name a label without a phrase.
    """
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2: in-batch negatives need a second row")
    check_trainable(examples, label_phrases)

    import torch
    from sentence_transformers import SentenceTransformer

    report = on_progress or (lambda fraction, message: None)
    report(0.0, "building training pairs")
    datasets = build_training_datasets(examples, label_phrases, parent_of, epochs=epochs, seed=seed, recipe=recipe)
    rows = sum(len(dataset) for dataset in datasets.values())
    # Tiny data (the product's tests, a new deployment) must still make whole batches.
    effective_batch = max(2, min(batch_size, min(len(dataset) for dataset in datasets.values())))

    torch.manual_seed(seed)
    model = SentenceTransformer(base_model, device=device)
    model.max_seq_length = recipe.max_seq_length
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctax-text-train-") as scratch:
        args = _training_arguments(scratch, recipe, rows, effective_batch, seed=seed, device=device)
        history = _fit(model, datasets, args, recipe, report, on_step)
    report(0.95, "saving model")
    model.save(str(out_dir))
    # The trainer's loss log, for the model card's loss curve (the trainer's own state lives in the scratch dir).
    (out_dir / LOSS_HISTORY).write_text(json.dumps(
        [{"step": int(row["step"]), "loss": float(row["loss"])} for row in history if "loss" in row]))
    report(1.0, f"trained on {rows} rows, saved to {out_dir}")
    return out_dir


def _training_arguments(
    scratch: str, recipe: TextTrainingRecipe, rows: int, batch_size: int, *, seed: int, device: str
) -> Any:
    """The trainer's arguments: one pass over the materialised epochs, no checkpoints, no evaluation."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    # Warm-up's first step has a learning rate of 0: on a handful of steps it would waste most of them.
    warmup = recipe.warmup_ratio if rows / batch_size >= 20 else 0.0
    return SentenceTransformerTrainingArguments(
        output_dir=scratch,
        # The epochs are materialised in the dataset (fresh texts and negatives each), so one pass.
        num_train_epochs=1,
        per_device_train_batch_size=batch_size,
        learning_rate=recipe.learning_rate,
        warmup_steps=warmup,
        weight_decay=recipe.weight_decay,
        lr_scheduler_type="linear",
        batch_sampler=(
            BatchSamplers.NO_DUPLICATES if recipe.sampler == "no_duplicates" else BatchSamplers.BATCH_SAMPLER
        ),
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_steps=max(1, math.ceil(rows / batch_size / 20)),
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
    )


def _fit(model: Any, datasets: Mapping[str, Any], args: Any, recipe: TextTrainingRecipe, report: ProgressFn,
         on_step: StepFn | None = None) -> list[dict[str, Any]]:
    """Train `model` in place on the datasets, each with its loss (one dataset: no multi-dataset sampling);
    returns the trainer's log history."""
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import PrinterCallback

    train_dataset: Any = datasets if len(datasets) > 1 else next(iter(datasets.values()))
    losses = _make_losses(model, recipe, list(datasets))
    loss: Any = losses if len(losses) > 1 else next(iter(losses.values()))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=loss,
        callbacks=[_progress_callback(report, on_step)],
    )
    # With tqdm disabled the trainer prints every log dict to stdout; progress goes through on_progress.
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return list(trainer.state.log_history)
