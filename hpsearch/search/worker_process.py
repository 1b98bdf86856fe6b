"""A worker process as ``--jobs`` starts it: ``python -m hpsearch.search.worker_process OPTIONS_JSON``.

The pool (hpsearch.search.pool) hands each worker its WorkerOptions as JSON rather than spelling the CLI's flags,
so the search layer starts its own processes. The process ends as ``hpsearch worker`` does: 0 when the study holds
its budget, 2 with one ``error:`` line for a user error, 130 when interrupted (SIGTERM from the pool, or Ctrl-C);
and 3, saying nothing, when the study's first trials all failed alike, which the pool then says once for all its
workers (hpsearch.search.user_objective.REPEATED_FAILURE_EXIT).
"""

from __future__ import annotations

import sys

from hpsearch.errors import HPSearchError
from hpsearch.process import prepare_process, quiet_optuna

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the worker that ``argv[0]`` (WorkerOptions as JSON) describes; the exit code."""
    prepare_process()
    quiet_optuna()
    from hpsearch.search.user_objective import REPEATED_FAILURE_EXIT, RepeatedFailureError
    from hpsearch.search.worker import WorkerOptions, run_worker

    try:
        run_worker(WorkerOptions.from_json((argv if argv is not None else sys.argv[1:])[0]))
    except RepeatedFailureError:
        return REPEATED_FAILURE_EXIT
    except HPSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
