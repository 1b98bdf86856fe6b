"""``hpsearch run`` and ``hpsearch worker``: a study, in this process or its workers, and one more worker on it."""

import functools
from typing import Any

import typer

from hpsearch.cli.options import (
    ArtifactDirOption,
    ArtifactsOption,
    BatchOption,
    CheckpointDirOption,
    DeviceOption,
    DevicesOption,
    DirectionOption,
    DurableOption,
    GridPointsOption,
    HeartbeatOption,
    IndexOption,
    JobsOption,
    LrFindOption,
    LrRangeOption,
    MaxRetriesOption,
    MetricOption,
    NTrialsOption,
    ObjectiveOption,
    PreflightOption,
    PrunerOption,
    PrunerWarmupOption,
    QuietOption,
    RunSeedOption,
    SpecOption,
    StorageOption,
    StrategyOption,
    StudyArgument,
    StudyOption,
    ThreadsOption,
    TimeoutOption,
    TrustOption,
    WdRangeOption,
    console,
    with_train_options,
)
from hpsearch.process import quiet_optuna
from hpsearch.search.storages import DEFAULT_HEARTBEAT, DEFAULT_MAX_RETRIES

__all__ = ["run", "worker"]


@with_train_options
def run(train_flags: dict[str, Any], strategy: StrategyOption = None, study: StudyOption = None,
        storage: StorageOption = None, n_trials: NTrialsOption = None, timeout: TimeoutOption = None,
        objective: ObjectiveOption = None, metric: MetricOption = None, direction: DirectionOption = None,
        pruner: PrunerOption = None, pruner_warmup: PrunerWarmupOption = None,
        seed: RunSeedOption = None, lr_range: LrRangeOption = None, wd_range: WdRangeOption = None,
        grid_points: GridPointsOption = None, lr_find: LrFindOption = None, spec: SpecOption = None,
        batch: BatchOption = None, jobs: JobsOption = 1, devices: DevicesOption = None,
        heartbeat: HeartbeatOption = DEFAULT_HEARTBEAT, max_retries: MaxRetriesOption = DEFAULT_MAX_RETRIES,
        durable: DurableOption = False, checkpoint_dir: CheckpointDirOption = None, artifacts: ArtifactsOption = False,
        artifact_dir: ArtifactDirOption = None, preflight: PreflightOption = True, quiet: QuietOption = False) -> None:
    """Search learning rate and weight decay (or a spec's space) with an Optuna study; or run your own Optuna
    objective (--objective) as its trials."""
    from hpsearch.presentation.dashboard import artifact_folder
    from hpsearch.presentation.progress import StudyProgress
    from hpsearch.presentation.run import run_study
    from hpsearch.presentation.tables import print_run
    from hpsearch.search.objective import TrialFiles
    from hpsearch.search.pool import WorkerPool
    from hpsearch.search.runner import stored_tables
    from hpsearch.search.spec import StudySpec
    from hpsearch.search.storages import open_storage

    connect = functools.partial(open_storage, storage, heartbeat=heartbeat, max_retries=max_retries, durable=durable)
    opened = connect() if spec is None and study is not None else None  # a stored study's spec is the base
    study_spec = StudySpec.from_sources(
        spec if spec is not None else stored_tables(study, opened, pruner_given=pruner is not None),
        train=train_flags, lr_range=lr_range, wd_range=wd_range, name=study, strategy=strategy, n_trials=n_trials,
        timeout=timeout, objective=objective, metric=metric, direction=direction, pruner=pruner,
        pruner_warmup=pruner_warmup, seed=seed, grid_points=grid_points, lr_find=lr_find)
    optuna_storage = opened or connect()
    files = TrialFiles(checkpoint_dir, artifact_folder(storage, artifact_dir) if artifacts else None)
    pool = WorkerPool.for_run(storage, jobs, devices, heartbeat=heartbeat, max_retries=max_retries, durable=durable,
                              files=files)
    quiet_optuna()
    with StudyProgress.resuming(console, study_spec, optuna_storage, enabled=not quiet) as progress:
        result = run_study(study_spec, optuna_storage, callbacks=[progress.on_trial], files=files, pool=pool,
                           batch=batch, preflight=preflight)
    print_run(console, result, quiet=quiet, storage=storage)


def worker(study: StudyArgument, storage: StorageOption = None, device: DeviceOption = None,
           threads: ThreadsOption = None, timeout: TimeoutOption = None, heartbeat: HeartbeatOption = DEFAULT_HEARTBEAT,
           max_retries: MaxRetriesOption = DEFAULT_MAX_RETRIES, durable: DurableOption = False,
           checkpoint_dir: CheckpointDirOption = None, artifact_dir: ArtifactDirOption = None,
           batch: BatchOption = None, index: IndexOption = None, trust: TrustOption = None,
           quiet: QuietOption = False) -> None:
    """Join a stored study from any machine and run its trials until the study holds its budget.

    The stored spec may name entry points (the user's model, data, loss): the worker imports only files
    inside its working directory and modules of packages named with --trust.
    """
    from hpsearch.presentation.progress import StudyProgress
    from hpsearch.presentation.run import CURVE_WRITER
    from hpsearch.search.storages import open_storage
    from hpsearch.search.summary import load_family
    from hpsearch.search.worker import WorkerOptions, run_worker, stored_spec

    if threads is not None and threads < 1:
        raise typer.BadParameter(f"must be >= 1, got {threads}", param_hint="--threads")
    quiet_optuna()
    options = WorkerOptions(
        study, storage, heartbeat=heartbeat, max_retries=max_retries, durable=durable,
        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
        artifact_dir=str(artifact_dir) if artifact_dir else None, curve_writer=CURVE_WRITER if artifact_dir else None,
        device=device, threads=threads, index=index, timeout=timeout, trust=tuple(trust or ()), batch=batch)
    optuna_storage = open_storage(storage, heartbeat=heartbeat, max_retries=max_retries, durable=durable)
    first = load_family(study, optuna_storage)[0]
    with StudyProgress(console, stored_spec(first, optuna_storage), enabled=not quiet) as progress:
        last = run_worker(options, callbacks=[progress.on_trial], storage=optuna_storage)
    if not quiet:
        console.print(f"worker done: {last.study_name} holds its budget")
