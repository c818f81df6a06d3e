"""Which torch device the settings name, and what running on it means: autocast on CUDA (fp16/bf16, off on CPU),
pinned host memory for tensors sent to the GPU, and a batch size chosen from the GPU's free memory.

The same functions run on CPU (autocast disabled, nothing pinned, no batch size from memory), so the GPU path is
exercised by every test and cannot rot unnoticed on machines without one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

DeviceSetting = Literal["auto", "cpu", "cuda"]
AutocastSetting = Literal["auto", "bf16", "fp16", "off"]
MIN_BATCH, MAX_BATCH = 8, 1024
PROBE_ITEMS = 8


def resolve_device(setting: DeviceSetting) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CTAX_DEVICE=cuda but torch sees no CUDA device")
    return setting


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def autocast_dtype(device: str, setting: AutocastSetting) -> str | None:
    """The dtype the torch towers compute in under autocast: none on CPU (fp32 as trained) or when turned off;
    on CUDA bf16 where the GPU supports it (no overflow risk: fp32's range), else fp16."""
    if not is_cuda(device) or setting == "off":
        return None
    if setting == "auto":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return {"bf16": "bfloat16", "fp16": "float16"}[setting]


@contextmanager
def inference(device: str, dtype: str | None) -> Iterator[None]:
    """No autograd, and autocast to `dtype` when one is given (CUDA); on CPU the autocast context is entered
    disabled, so the code path is the same."""
    import torch

    with torch.inference_mode(), torch.autocast(device_type="cuda" if is_cuda(device) else "cpu",
                                                dtype=getattr(torch, dtype) if dtype else None,
                                                enabled=dtype is not None):
        yield


def to_device(tensor: torch.Tensor, device: str) -> torch.Tensor:
    """A host tensor on its way to `device`: on CUDA through pinned (page-locked) memory, copied asynchronously so
    the next batch's preprocessing overlaps the copy; on CPU the tensor itself."""
    if not is_cuda(device):
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def batch_from_memory(free_bytes: int, per_item_bytes: float, fraction: float,
                      floor: int = MIN_BATCH, cap: int = MAX_BATCH) -> int:
    """The largest batch whose activations fit in `fraction` of the free memory, in multiples of 8 (tensor cores
    work in such tiles), between `floor` and `cap`."""
    if per_item_bytes <= 0:
        return cap
    fitting = int(free_bytes * fraction / per_item_bytes)
    return max(floor, min(cap, fitting - fitting % 8))


def batch_size_for(device: str, encode_items: Callable[[int], None], fraction: float) -> int | None:
    """On CUDA: run `encode_items(PROBE_ITEMS)` (the worst case: longest texts, full-size images), measure what a
    creative costs in GPU memory (torch's peak for the torch towers, the drop in free memory for ONNX Runtime's
    arena) and size the batch from what is free. None on CPU, where the configured batch size stands."""
    if not is_cuda(device):
        encode_items(1)  # the same call, so a broken probe fails on CPU too
        return None
    import torch

    torch.cuda.synchronize(device)
    free_before, _ = torch.cuda.mem_get_info(device)
    torch.cuda.reset_peak_memory_stats(device)
    allocated = torch.cuda.memory_allocated(device)
    encode_items(PROBE_ITEMS)
    torch.cuda.synchronize(device)
    free_after, _ = torch.cuda.mem_get_info(device)
    per_item = max(torch.cuda.max_memory_allocated(device) - allocated, free_before - free_after) / PROBE_ITEMS
    return batch_from_memory(free_after, per_item, fraction)
