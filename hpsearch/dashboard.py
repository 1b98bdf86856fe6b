"""Serve optuna-dashboard on a storage, bound to the loopback interface unless asked otherwise."""

from __future__ import annotations

from optuna.storages import BaseStorage

__all__ = ["serve_dashboard"]


def serve_dashboard(storage: BaseStorage, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Block serving the dashboard until interrupted."""
    from optuna_dashboard import run_server  # imports a web stack; only this command needs it

    run_server(storage, host=host, port=port)
