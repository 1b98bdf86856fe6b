"""How an hpsearch process starts: the console command and each worker process the pool starts alike."""

from __future__ import annotations

import gc
import logging
import signal
from typing import Any

__all__ = ["prepare_process", "quiet_optuna"]


def prepare_process() -> None:
    """Library warnings to stderr as ``warning: …`` lines, SIGTERM ending the process as Ctrl-C does, and what is
    imported so far frozen out of the garbage collector's full passes.

    SIGTERM (a scheduler, ``kill``, the pool stopping its workers) raises KeyboardInterrupt, so the running trial is
    marked interrupted, not lost. The freeze: this process keeps torch and the rest to the end, and each full pass
    would walk their 200,000 objects again (hpsearch.search.loop freezes more).
    """
    gc.freeze()
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def quiet_optuna() -> None:
    """Optuna's per-trial info lines off: hpsearch's progress and tables say what happened."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
