"""``hpsearch studies``, ``show``, ``export``, ``report`` and ``dashboard``: what a storage holds (none trains)."""

import json
import signal
from pathlib import Path

import typer

from hpsearch.cli.options import (
    ArtifactDirOption,
    ExportTopOption,
    HostOption,
    JsonOption,
    OutFileOption,
    OutFolderOption,
    PortOption,
    StorageOption,
    StudyArgument,
    TopOption,
    TrialOption,
    console,
)
from hpsearch.process import quiet_optuna

__all__ = ["dashboard", "export", "report", "show", "studies"]


def studies(storage: StorageOption = None, as_json: JsonOption = False) -> None:
    """List the studies in the storage with their trial counts and best values."""
    from hpsearch.presentation.tables import print_studies
    from hpsearch.search.storages import open_storage
    from hpsearch.search.summary import list_studies, study_row_json

    quiet_optuna()
    rows = list_studies(open_storage(storage))
    if as_json:
        typer.echo(json.dumps([study_row_json(row) for row in rows], indent=2))
    else:
        print_studies(console, rows)


def show(study: StudyArgument, storage: StorageOption = None, top: TopOption = 10, trial: TrialOption = None,
         as_json: JsonOption = False) -> None:
    """Print a study's best trials, or one trial in full."""
    from hpsearch.presentation.tables import print_trial, print_trials
    from hpsearch.search.storages import open_storage
    from hpsearch.search.summary import best_with_study, load_family, trial_json

    quiet_optuna()
    family = load_family(study, open_storage(storage))
    if trial is not None:
        trials = family[-1].get_trials(deepcopy=False)
        if not 0 <= trial < len(trials):
            raise typer.BadParameter(f"study {family[-1].study_name!r} has {len(trials)} trials (0 to "
                                     f"{len(trials) - 1}), got {trial}", param_hint="--trial")
        if as_json:
            typer.echo(json.dumps(trial_json(trials[trial], full=True), indent=2))
        else:
            print_trial(console, family[-1], trials[trial])
        return
    best = best_with_study(family, top)
    if as_json:
        typer.echo(json.dumps([{"study": its.study_name, **trial_json(t)} for its, t in best], indent=2))
        return
    print_trials(console, family, best, title=f"study {study}: top {top}")
    if len(family) > 1 and best:  # --trial alone reads the last stage: name the stage of the trial wanted
        console.print(f"one in full: hpsearch show {best[0][0].study_name} --trial {best[0][1].number}",
                      highlight=False)


def export(study: StudyArgument, out: OutFileOption = Path("best.json"), storage: StorageOption = None,
           top: ExportTopOption = 1) -> None:
    """Write the best trial's complete config to JSON; `hpsearch train --config FILE` runs it again."""
    from hpsearch.presentation.export import export_best, write_export
    from hpsearch.search.storages import open_storage

    quiet_optuna()
    record = export_best(study, open_storage(storage), top=top)
    write_export(record, out)
    console.print(f"wrote {out}: trial {record['trial']}, {record['metric']} {record['value']:.4g}")


def report(study: StudyArgument, out: OutFolderOption = Path("report"), storage: StorageOption = None) -> None:
    """Draw a study's history, lr x weight-decay landscape, learning curves, importances and LR test."""
    from hpsearch.presentation.report import write_report
    from hpsearch.search.storages import open_storage

    quiet_optuna()
    written = write_report(study, open_storage(storage), out)
    console.print(f"wrote {written.index} with {len(written.figures)} figures"
                  + (f"; not drawn: {', '.join(written.missing)}" if written.missing else ""))


def dashboard(storage: StorageOption = None, host: HostOption = "127.0.0.1", port: PortOption = 8080,
              artifact_dir: ArtifactDirOption = None) -> None:
    """Serve optuna-dashboard on the storage, with the trials' artifacts, until interrupted."""
    from hpsearch.presentation.dashboard import artifact_folder, check_port, serve_dashboard
    from hpsearch.search.storages import open_storage

    check_port(host, port)
    optuna_storage = open_storage(storage, heartbeat=None)
    # A server has nothing to save: SIGTERM ends it at once. Raised as KeyboardInterrupt (what a run needs), it
    # could land in a finalizer of the web or SQL stack, which swallows it, and the server would serve on.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    typer.echo(f"optuna-dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    serve_dashboard(optuna_storage, host=host, port=port, artifacts=artifact_folder(storage, artifact_dir))
