"""Which torch device the settings name."""

from __future__ import annotations

from typing import Literal

DeviceSetting = Literal["auto", "cpu", "cuda"]


def resolve_device(setting: DeviceSetting) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CTAX_DEVICE=cuda but torch sees no CUDA device")
    return setting
