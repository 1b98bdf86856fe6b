"""Device names: check the spelling early, resolve ``auto`` to the best device present."""

from __future__ import annotations

import re

import torch

from hpsearch.errors import ConfigError, DeviceError

__all__ = ["check_device_name", "resolve_device"]

_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")  # fullmatch: no newline after, ASCII digits only


def check_device_name(name: str) -> None:
    """Reject a device name torch would not know, without probing any hardware."""
    if not _DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → cuda, else mps, else cpu; a named device must be present."""
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} is not available: torch sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} is not available: {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {name!r} is not available on this machine")
    return device
