"""What a study holds as hpsearch reads it, and a process that reads it back, for the storage contract
(tests/search/test_storage_contract.py): what one worker wrote must read back equal in another process.

Run as a script, it answers each JSON line on stdin, ``{"url": …, "study": …}``, with one JSON line: the study's
``study_view`` read through a storage that ``open_storage`` opens anew for that request (as ``hpsearch show`` or
a new worker would), or ``{"error": traceback}``. One process serves a whole test session: importing hpsearch
takes seconds, opening a storage does not.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import traceback
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from storage_dump import dump_trial

from hpsearch.search.records import read_record, read_trial
from hpsearch.search.storages import open_storage


def trial_view(trial: FrozenTrial) -> dict[str, Any]:
    """A trial as plain JSON values: everything Optuna holds of it (storage_dump.dump_trial) and its hpsearch
    record as read_trial reads it, every field."""
    return as_json({**dump_trial(trial), "record": dataclasses.asdict(read_trial(trial))})


def study_view(study: optuna.Study) -> dict[str, Any]:
    """A study as plain JSON values: its hpsearch record and its trials (trial_view), as ``study`` reads them."""
    return as_json({"record": dataclasses.asdict(read_record(study)),
                    "trials": [trial_view(trial) for trial in study.get_trials(deepcopy=False)]})


def as_json(value: Any) -> Any:
    """``value`` as it comes back from JSON (int keys become strings), so that views made here and views read
    from the reader process compare equal."""
    return json.loads(json.dumps(value))


def read_study(url: str, study: str) -> dict[str, Any]:
    """The study_view of ``study`` at ``url``, read through a storage opened for this read alone."""
    storage = open_storage(url)
    try:
        return study_view(optuna.load_study(study_name=study, storage=storage))
    finally:
        engine = getattr(storage, "engine", None)
        if engine is not None:  # a database: close its connections now, so that the test can drop it
            engine.dispose()


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for line in sys.stdin:
        try:
            answer = read_study(**json.loads(line))
        except Exception:
            answer = {"error": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
