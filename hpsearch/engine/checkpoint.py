"""Checkpoints of a training run (model, optimizer, scheduler, RNG, epoch) for exact resume."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpsearch.engine.config import TrainConfig
from hpsearch.errors import CheckpointError

__all__ = ["Checkpoint", "check_checkpoint_file", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1
# The device may change between a run and its resume; every other field must match.
_RESUMABLE_ACROSS = ("device",)


@dataclass(frozen=True)
class Checkpoint:
    """Progress saved beside the tensors: last finished epoch, its metrics history, first loss."""

    epoch: int
    history: list[dict[str, Any]]
    initial_loss: float


def save_checkpoint(path: str | Path, progress: Checkpoint, config: TrainConfig, model: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                    shuffle: torch.Generator, scaler: torch.amp.GradScaler | None = None) -> None:
    """Write atomically (temporary file, then rename) so a kill never leaves half a checkpoint; an fp16
    run's loss scale is kept too."""
    path = Path(path)
    state = {
        "format": FORMAT_VERSION,
        "config": config.to_dict(),
        "epoch": progress.epoch,
        "history": progress.history,
        "initial_loss": progress.initial_loss,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "shuffle_rng": shuffle.get_state(),
        "torch_rng": torch.get_rng_state(),
        "scaler": scaler.state_dict() if scaler is not None else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def check_checkpoint_file(path: str | Path) -> None:
    """Refuse a file that is not an hpsearch checkpoint; cheap, as tensors are mapped, not read."""
    _read(path, mmap=True)


def load_checkpoint(path: str | Path, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, shuffle: torch.Generator,
                    scaler: torch.amp.GradScaler | None = None) -> Checkpoint:
    """Restore every state in place from ``path``; refuse a checkpoint of another configuration."""
    state = _read(path)
    # A field the checkpoint lacks came after it was written: its run had the field's default.
    saved, current = {**TrainConfig().to_dict(), **state["config"]}, config.to_dict()
    for key in current:
        if key not in _RESUMABLE_ACROSS and saved.get(key) != current[key]:
            raise CheckpointError(f"checkpoint {path} was made with {key}={saved.get(key)!r}, not {current[key]!r}; "
                                  f"use another --checkpoint path or delete it to start over")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    shuffle.set_state(state["shuffle_rng"])
    torch.set_rng_state(state["torch_rng"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return Checkpoint(epoch=state["epoch"], history=state["history"], initial_loss=state["initial_loss"])


def _read(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"not an hpsearch checkpoint: {path} (torch cannot read it: "
                              f"{type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"not an hpsearch checkpoint: {path}")
    return state

