"""The GPU path run on CPU (the same functions; no GPU is needed for them to be exercised): autocast off, tensors
passed through, the batch size arithmetic, and the memory probe called the way CUDA calls it."""

from __future__ import annotations

import pytest
import torch

from ctax.embedding.device import (
    MAX_BATCH,
    MIN_BATCH,
    autocast_dtype,
    batch_from_memory,
    batch_size_for,
    inference,
    to_device,
)


def test_autocast_is_off_on_cpu_whatever_the_setting() -> None:
    for setting in ("auto", "bf16", "fp16", "off"):
        assert autocast_dtype("cpu", setting) is None  # type: ignore[arg-type]
    assert autocast_dtype("cuda", "off") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU side of the path")
def test_inference_on_cpu_is_fp32_without_autograd() -> None:
    layer = torch.nn.Linear(4, 2)
    with inference("cpu", autocast_dtype("cpu", "auto")):
        assert torch.is_inference_mode_enabled() and not torch.is_autocast_enabled("cpu")
        out = layer(torch.ones(3, 4))
    assert out.dtype == torch.float32 and not out.requires_grad


def test_to_device_on_cpu_hands_the_tensor_over_unpinned() -> None:
    tensor = torch.arange(6.0).reshape(2, 3)
    moved = to_device(tensor, "cpu")
    assert moved.data_ptr() == tensor.data_ptr() and not moved.is_pinned()


def test_batch_from_memory_fits_the_fraction_in_multiples_of_eight() -> None:
    gib = 1 << 30
    assert batch_from_memory(8 * gib, 20 * (1 << 20), 0.5) == 200  # 4 GiB / 20 MiB = 204.8 -> 200
    assert batch_from_memory(8 * gib, 20 * (1 << 20), 0.25) == 96  # 102.4 -> 96
    assert batch_from_memory(1 << 20, 20 * (1 << 20), 0.5) == MIN_BATCH  # never below the floor
    assert batch_from_memory(80 * gib, 1024, 0.9) == MAX_BATCH  # nor above the cap
    assert batch_from_memory(gib, 0, 0.5) == MAX_BATCH  # nothing measured per item: the cap


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU side of the path")
def test_batch_size_for_runs_the_probe_on_cpu_and_keeps_the_configured_size() -> None:
    calls: list[int] = []
    assert batch_size_for("cpu", calls.append, 0.5) is None
    assert calls == [1]  # the same probe call CUDA makes, so a broken probe fails here too

    def broken(n: int) -> None:
        raise RuntimeError("probe failed")

    with pytest.raises(RuntimeError, match="probe failed"):
        batch_size_for("cpu", broken, 0.5)
