"""Every ``hpsearch`` command shown in README.md and docs/*.md runs as written and does what the text beside it says.

Each ```bash block runs on its own, as a reader would run it: its commands in order, in a folder of its own that
holds only what the repository gives a reader (studies/ and examples/), with a PostgreSQL database of its own
where it names one. A block runs once per session, when the first of its tests asks, so any test can run alone
and in any order. Each command is one test, which checks what the documentation claims that command prints or
writes (``CLAIMS``: one check per command, reading the storage through Optuna alone): a command with no check
fails, and so does a check of a command the docs no longer show. A command that cannot run here (a server that
never returns, a download) carries ``# skip-ci: <why>`` on its line and is reported as skipped, not dropped.
Each command is written in one place only (README.md's tour is included into the docs site, not copied), so the
documentation costs CI each command once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import math
import os
import re
import shlex
import shutil
import tomllib
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import fresh_postgres_database
from storage_dump import logical_dump
from typer.testing import CliRunner, Result

from hpsearch.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
DOCS_POSTGRES = "postgresql://postgres@127.0.0.1:5432/hpsearch"  # the docs name one created by hand
JOURNAL = "hpsearch.journal"  # the default storage, in the working directory (README's tour says so)
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", flags=re.M | re.S)
SKIP_MARK = re.compile(r"#\s*skip-ci:\s*(?P<why>.+)$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class DocCommand:
    """One ``hpsearch`` line of a ```bash block: where it is, what it runs, and why CI skips it (if it does)."""

    file: str  # relative to the repository root, e.g. docs/storage.md
    block: int  # the line of its block's first line: the commands of one block run together, in order
    line: int
    command: str  # without its comment
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line} {self.command}"


def documented_files() -> list[Path]:
    """README.md first, then the docs pages in name order (cli.md is generated and shows no bash blocks)."""
    return [README, *sorted(DOCS.glob("*.md"))]


def bash_blocks(path: Path) -> list[str]:
    return BASH_BLOCK.findall(path.read_text())


def doc_commands(path: Path) -> list[DocCommand]:
    """The ``hpsearch`` lines of ``path``'s ```bash blocks, in order, with their line numbers."""
    text = path.read_text()
    commands = []
    for block in BASH_BLOCK.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        for offset, raw in enumerate(block.group(1).splitlines()):
            if not raw.strip().startswith("hpsearch "):
                continue
            skip = SKIP_MARK.search(raw)
            command = shlex.join(shlex.split(raw, comments=True))
            commands.append(DocCommand(str(path.relative_to(ROOT)), first_line, first_line + offset, command,
                                       skip["why"].strip() if skip else None))
    return commands


def all_doc_commands() -> list[DocCommand]:
    return [command for path in documented_files() for command in doc_commands(path)]


def as_param(command: DocCommand) -> object:
    marks = [pytest.mark.skip(reason=f"skip-ci: {command.skip}")] if command.skip else []
    return pytest.param(command, id=command.id, marks=marks)


# --- running a block ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    """What one command of a block did, and what it left for the next."""

    doc: DocCommand
    result: Result
    folder: Path  # a copy of the block's folder as the command left it, this command's test's own to write in
    storage: str  # the storage the command used: its --storage, else the journal in ``folder``
    dump: dict[str, Any]  # logical_dump(storage) right after the command; {} where it made none

    @property
    def output(self) -> str:
        return self.result.output

    def study(self, name: str) -> dict[str, Any]:
        assert name in self.dump, f"no study {name!r} in {self.storage}, only {sorted(self.dump)}"
        return self.dump[name]

    def family(self, name: str) -> list[dict[str, Any]]:
        """The study ``name``, or the stages ``name/1-coarse``, ``name/2-fine``, … of a coarse-to-fine run, each
        with its name."""
        stages = [self.dump[key] | {"name": key} for key in sorted(self.dump) if key.startswith(f"{name}/")]
        return stages or [self.study(name) | {"name": name}]

    def again(self, command: str) -> Result:
        """Run one more command where this one ran, as the docs say a reader may (the same command again)."""
        result = invoke(self.folder, command)
        assert result.exit_code == 0, f"{command}\n{result.output}"
        return result

    def failure(self) -> str:
        """The command's exit code and output, and where it raised something other than an exit, the traceback."""
        raised = self.result.exc_info is not None and not isinstance(self.result.exception, SystemExit)
        return f"{self.doc.id} exited {self.result.exit_code}\n{self.output}" + (
            "".join(traceback.format_exception(*self.result.exc_info)) if raised else "")


def invoke(folder: Path, command: str) -> Result:
    with contextlib.chdir(folder):
        return CliRunner().invoke(app, shlex.split(command)[1:])


def run_block(commands: list[DocCommand], folder: Path, database: Callable[[], str]) -> dict[int, Ran]:
    """Run a block's commands in order in ``folder``/work, as a reader with a fresh checkout would, keeping a copy
    of the folder and a dump of the storage after each."""
    work = folder / "work"
    for given in ("studies", "examples"):
        shutil.copytree(ROOT / given, work / given)
    postgres = database() if any(DOCS_POSTGRES in doc.command for doc in commands) else ""
    runs = {}
    for doc in commands:
        if doc.skip:
            continue
        command = doc.command.replace(DOCS_POSTGRES, postgres)
        result = invoke(work, command)
        after = folder / f"after-line-{doc.line}"
        shutil.copytree(work, after)
        args = shlex.split(command)
        storage = args[args.index("--storage") + 1] if "--storage" in args else str(after / JOURNAL)
        dump = logical_dump(storage) if "://" in storage or Path(storage).exists() else {}
        runs[doc.line] = Ran(doc, result, after, storage, dump)
    return runs


@pytest.fixture(scope="session")
def block_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[DocCommand], Ran]]:
    """What each command did, its block run once per session when the first of its tests asks."""
    blocks: dict[tuple[str, int], dict[int, Ran]] = {}
    with ExitStack() as databases:
        def ran(doc: DocCommand) -> Ran:
            key = (doc.file, doc.block)
            if key not in blocks:
                commands = [command for command in all_doc_commands() if (command.file, command.block) == key]
                folder = tmp_path_factory.mktemp(f"{Path(doc.file).stem}-{doc.block}")
                blocks[key] = run_block(commands, folder,
                                        lambda: databases.enter_context(fresh_postgres_database()))
            return blocks[key][doc.line]

        yield ran


# --- reading what a command printed and stored ------------------------------------------------------------------


def table(output: str, column: str) -> list[dict[str, str]]:
    """The rows of the first table in ``output`` with a column named ``column``, each as column → cell."""
    lines = output.splitlines()
    split = [re.split(r"\s{2,}", line.strip()) for line in lines]
    start = next((i for i, cells in enumerate(split) if column in cells), None)
    assert start is not None, f"no table with a column {column!r} in:\n{output}"
    header, rows = split[start], []
    for cells in split[start + 2:]:  # the header, then its rule
        if cells == [""]:
            break
        assert len(cells) == len(header), f"a row of {len(cells)} cells under {header}: {cells}"
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def shows(cell: str, value: float) -> bool:
    """Whether ``cell`` is ``value`` rounded to the digits it shows (``0.09877`` shows 0.0987661 and no other)."""
    shown = Decimal(cell.replace(",", ""))
    return abs(Decimal(value) - shown) <= Decimal(1).scaleb(shown.as_tuple().exponent) / 2


def found(pattern: str, output: str) -> re.Match[str]:
    match = re.search(pattern, output, flags=re.M)
    assert match is not None, f"nothing like {pattern!r} in:\n{output}"
    return match


def record(trial: dict[str, Any]) -> dict[str, Any]:
    """hpsearch's record of a trial (its ``hpsearch`` user attr)."""
    return trial["user_attrs"]["hpsearch"]


def study_record(study: dict[str, Any]) -> dict[str, Any]:
    return study["user_attrs"]["hpsearch"]


def own(study: dict[str, Any]) -> list[dict[str, Any]]:
    """The trials a study ran itself, finished: not those a coarse-to-fine stage holds from earlier stages."""
    return [trial for trial in study["trials"]
            if trial["state"] in ("COMPLETE", "PRUNED") and not record(trial).get("carried_from")]


def epochs(trial: dict[str, Any]) -> int:
    return len(trial["intermediate_values"])


def ranked(family: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The complete trials of a study (or of every stage of a family) with their study's name, best first."""
    sign = 1 if family[0]["directions"] == ["MINIMIZE"] else -1
    trials = [(study["name"], trial) for study in family for trial in own(study) if trial["state"] == "COMPLETE"]
    return sorted(trials, key=lambda pair: (sign * pair[1]["values"][0], pair[1]["number"]))


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def spec_file(ran: Ran, path: str) -> dict[str, Any]:
    """A spec of the docs' studies/ folder, as the command read it."""
    return tomllib.loads((ran.folder / path).read_text())


def within(trials: list[dict[str, Any]], name: str, low: float, high: float) -> None:
    values = [trial["params"][name] for trial in trials]
    assert all(low <= value <= high for value in values), f"{name} outside [{low}, {high}]: {values}"


def other_processes(trials: list[dict[str, Any]]) -> set[str]:
    """The workers (host:pid) that ran ``trials``; none of them this test's own process."""
    workers = {record(trial)["worker"] for trial in trials}
    assert not any(worker.endswith(f":{os.getpid()}") for worker in workers), workers
    return workers


def diagnosis_counts(text: str) -> tuple[int, Counter[str]]:
    """``N trials diagnosed: 3 diverging (…), 1 stuck, 5 ok`` as N and each label's count."""
    match = found(r"(\d+) trials diagnosed: (.*)$", text)
    labels = re.sub(r"\([^)]*\)", "", match[2])
    return int(match[1]), Counter({label: int(n) for n, label in re.findall(r"(\d+) ([a-z]+)", labels)})


def stored_labels(trials: list[dict[str, Any]]) -> Counter[str]:
    return Counter(record(trial)["diagnosis"]["label"].lower() for trial in trials)


# --- what the docs say commands print and write -------------------------------------------------------------------


def printed_the_run(ran: Ran, name: str) -> None:
    """docs/index.md, what the tour did: ``run`` printed the counts (complete, pruned, failed), the best value and
    its parameters, the diagnosis counts and the study's top trials, and the command that exports the best one."""
    family = ran.family(name)
    trials = [trial for study in family for trial in own(study)]
    counts = found(r"(\d+) complete, (\d+) pruned, (\d+) failed", ran.output)
    states = Counter(trial["state"] for trial in trials)
    assert [int(n) for n in counts.groups()] == [states["COMPLETE"], states["PRUNED"], states["FAIL"]]
    best_study, best = ranked(family)[0]
    best_line = found(r"^best \S+ (\S+) \(trial (\d+).*\): (.*)$", ran.output)
    assert shows(best_line[1], best["values"][0]) and int(best_line[2]) == best["number"], best_line[0]
    if len(family) > 1:
        assert best_study in best_line[0]  # a coarse-to-fine run names the best trial's stage
    shown_params = dict(param.split("=") for param in best_line[3].split(", "))
    assert shown_params.keys() == best["params"].keys()
    assert all(shows(shown_params[key], value) if isinstance(value, float) else shown_params[key] == str(value)
               for key, value in best["params"].items()), best_line[0]
    assert diagnosis_counts(ran.output) == (len(trials), stored_labels(trials))
    top_table_lists_the_best(ran.output, family)
    assert f"hpsearch export {name} --out best.json" in ran.output


def top_table_lists_the_best(output: str, family: list[dict[str, Any]], top: int = 5) -> None:
    """A table of the best complete trials, best first, up to ``top``: their stage (of a family), number, value
    and epochs run."""
    rows = table(output, "trial")
    best = ranked(family)[:top]
    assert [int(row["trial"]) for row in rows] == [trial["number"] for _, trial in best], output
    metric = next(column for column in rows[0] if column not in ("stage", "trial", "params", "epochs", "seconds"))
    assert all(shows(row[metric], trial["values"][0]) for row, (_, trial) in zip(rows, best, strict=True)), output
    assert [int(row["epochs"]) for row in rows] == [epochs(trial) for _, trial in best]
    if len(family) > 1:
        assert [row["stage"] for row in rows] == [study.split("/")[-1] for study, _ in best]


def epoch_rows(ran: Ran, count: int) -> list[dict[str, str]]:
    """``train``'s per-epoch table, ``count`` epochs, and its last line: completed, every epoch, its last val_loss."""
    rows = table(ran.output, "epoch")
    assert [int(row["epoch"]) for row in rows] == list(range(1, count + 1)), ran.output
    last = found(r"^completed: (\d+)/(\d+) epochs .*val_loss (\S+)$", ran.output)
    assert int(last[1]) == int(last[2]) == count and last[3] == rows[-1]["val_loss"], last[0]
    return rows


def trains_again(ran: Ran, exported_file: str) -> None:
    """``train --config`` of an export trains the best trial again: on a CPU the same value, epoch by epoch."""
    exported = json.loads((ran.folder / exported_file).read_text())
    trial = ran.study(exported["study"])["trials"][exported["trial"]]
    rows = epoch_rows(ran, epochs(trial))
    if found(r" on (\w+);", ran.output)[1] != "cpu":
        pytest.skip("the docs promise the same value on CPU only")
    history = record(trial)["history"]
    assert all(shows(row["val_loss"], trial["intermediate_values"][int(row["epoch"])]) for row in rows), ran.output
    assert all(shows(row["train_loss"], epoch["train_loss"]) for row, epoch in zip(rows, history, strict=True))
    assert shows(rows[-1]["val_loss"], exported["value"])


def exports_the_best(ran: Ran, exported_file: str, name: str) -> dict[str, Any]:
    """``export`` writes the best trial's complete config: the one stored with it, all of it."""
    exported = json.loads((ran.folder / exported_file).read_text())
    best_study, best = ranked(ran.family(name))[0]
    assert (exported["study"], exported["trial"]) == (best_study, best["number"])
    assert exported["value"] == best["values"][0] and exported["params"] == best["params"]
    assert exported["config"] == record(best)["config"] and exported["seed"] == record(best)["seed"]
    return exported


def checks_the_setup(ran: Ran) -> list[str]:
    """docs/diagnosis.md: each check PASS, WARN or FAIL with the measured and expected values (SKIP with why);
    the command exits 1 when one fails, so a run that exited 0 printed no FAIL."""
    lines = re.findall(r"^(PASS|WARN|FAIL|SKIP) ([^:]+): (.*)$", ran.output, flags=re.M)
    names = [name for _, name, _ in lines]
    # the data, the initial loss, weight decay, backprop against finite differences, overfitting one batch, the
    # update/weight ratio: one line each
    assert len(names) == 6 and all(any(word in name for name in names) for word in
                                   ("data", "initial loss", "weight decay", "gradients", "overfit", "update")), names
    assert "FAIL" not in [outcome for outcome, _, _ in lines]
    assert all("(expected " in text for outcome, _, text in lines if outcome != "SKIP"), ran.output
    return [f"{name}: {text}" for _, name, text in lines]


def suggests_an_lr(ran: Ran, steps: int) -> None:
    """docs/strategies.md, the LR range test: suggestions steepest, divergence and valley (the default), a
    suggestion and a search range around it, in at most ``--steps`` batches."""
    suggested = {name: float(lr) for name, lr in re.findall(r"^\s*(steepest|divergence|valley): (\S+)$",
                                                             ran.output, flags=re.M)}
    line = found(r"^suggested lr (\S+) \((\w+)\); search range (\S+) to (\S+); (\d+) steps", ran.output)
    assert suggested.keys() == {"steepest", "divergence", "valley"} and line[2] == "valley"
    assert float(line[1]) == suggested["valley"] and float(line[3]) < float(line[1]) < float(line[4])
    assert int(line[5]) <= steps


def tour_run(ran: Ran) -> None:
    """README: a random search of 20 trials; the storage is hpsearch.journal in the working directory; a study is
    called <dataset>-<strategy>."""
    assert (ran.folder / JOURNAL).is_file()
    study = ran.study("digits-random")
    trials = own(study)
    assert len(trials) == len(study["trials"]) == 20
    within(trials, "lr", 1e-4, 1e-1)
    within(trials, "weight_decay", 1e-5, 1e-2)
    assert {epochs(trial) for trial in trials if trial["state"] == "COMPLETE"} == {5}
    assert all(epochs(trial) < 5 for trial in trials if trial["state"] == "PRUNED")
    printed_the_run(ran, "digits-random")


def tour_studies(ran: Ran) -> None:
    """``studies`` lists what the storage holds, each study's counts and best; ``--json`` too."""
    [row] = table(ran.output, "study")
    study = ran.study("digits-random")
    states = Counter(trial["state"] for trial in study["trials"])
    best = ranked(ran.family("digits-random"))[0][1]["values"][0]
    assert row["study"] == "digits-random" and (row["strategy"], row["metric"]) == ("random", "val_loss")
    assert [int(row[state]) for state in ("complete", "pruned", "fail")] == [
        states["COMPLETE"], states["PRUNED"], states["FAIL"]]
    assert shows(row["best"], best)
    [listed] = json.loads(ran.again("hpsearch studies --json").stdout)
    assert listed["name"] == "digits-random" and listed["best_value"] == best
    assert listed["counts"]["complete"] == states["COMPLETE"] and listed["counts"]["pruned"] == states["PRUNED"]


def tour_show_top(ran: Ran) -> None:
    """``show --top 5``: the study's five best trials, best first."""
    assert len(table(ran.output, "trial")) == 5
    top_table_lists_the_best(ran.output, ran.family("digits-random"), top=5)


def tour_show_json(ran: Ran) -> None:
    """``show --top 3 --json``: the same (the three best: number, value, params, epochs, seconds) as JSON."""
    shown = json.loads(ran.output)
    best = ranked(ran.family("digits-random"))[:3]
    assert [(row["number"], row["value"], row["params"], row["epochs"], row["seconds"]) for row in shown] == [
        (trial["number"], trial["values"][0], trial["params"], epochs(trial), record(trial)["seconds"])
        for _, trial in best]


def tour_show_trial(ran: Ran) -> None:
    """``show --trial 0``: one trial, its status (and reason), config and epochs; its diagnosis."""
    trial = ran.study("digits-random")["trials"][0]
    stored = record(trial)
    first = ran.output.splitlines()[0]
    assert first.startswith("trial 0 of digits-random"), first
    assert trial["state"].lower() in first and stored["status"] in first, first
    assert stored.get("reason") is None or stored["reason"] in ran.output
    assert stored["diagnosis"]["label"] in ran.output
    config = found(r"^config: (.*)$", ran.output)[1]
    for key in ("dataset", "model", "epochs", "batch_size", "lr", "weight_decay", "seed"):
        assert f"{key}={stored['config'][key]}" in config, (key, config)
    rows = table(ran.output, "epoch")
    assert len(rows) == epochs(trial) == len(stored["history"])
    assert all(shows(row["val_loss"], trial["intermediate_values"][int(row["epoch"])]) for row in rows)
    assert all(shows(row["train_loss"], epoch["train_loss"])
               for row, epoch in zip(rows, stored["history"], strict=True))


def tour_report(ran: Ran) -> None:
    """``report``: PNG figures and an index.md that shows them (README names landscape.png; docs/reports.md the
    others), with the diagnosis counts and the best config; a figure it cannot draw is listed with why."""
    folder = ran.folder / "reports/random"
    index = (folder / "index.md").read_text()
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", index)
    assert {"history.png", "landscape.png", "learning_curves.png", "importances.png"} <= set(shown), shown
    assert sorted(shown) == sorted(path.name for path in folder.glob("*.png")), "every figure written is shown"
    assert all(is_png(folder / name) for name in shown)
    assert "lr_range_test.png" not in shown and re.search(r"LR range test.*without", index), "listed, with why"
    trials = own(ran.study("digits-random"))
    assert diagnosis_counts(index) == (len(trials), stored_labels(trials))
    best = ranked(ran.family("digits-random"))[0][1]
    config = json.loads(re.search(r"^```json\n(.*?)^```", index, flags=re.M | re.S)[1])
    assert config and all(record(best)["config"][key] == value for key, value in config.items()), config


def tour_export(ran: Ran) -> None:
    exports_the_best(ran, "best.json", "digits-random")


def tour_train_again(ran: Ran) -> None:
    trains_again(ran, "best.json")


def own_model_train(ran: Ran) -> None:
    """README, your own model: the two functions of examples/cnn_digits.py train (the loss falls below chance)."""
    rows = epoch_rows(ran, 3)
    assert float(rows[-1]["val_loss"]) < min(float(rows[0]["val_loss"]), math.log(10))


def stacked(ran: Ran) -> None:
    """docs/batched.md: ``--batch 4`` trains 4 trials at once (and a finished member's slot takes the next)."""
    study = ran.study("stacked")
    trials = own(study)
    assert len(trials) == 8 and max(map(epochs, trials)) == 3
    events = sorted([(datetime.fromisoformat(trial["datetime_start"]), 1) for trial in trials]
                    + [(datetime.fromisoformat(trial["datetime_complete"]), -1) for trial in trials])
    running = [sum(step for _, step in events[: i + 1]) for i in range(len(events))]
    assert max(running) == 4, f"trials running at once, at each start and end: {running}"
    printed_the_run(ran, "stacked")


def diagnosis_check(ran: Ran) -> None:
    """docs/diagnosis.md: ``check`` on the defaults (digits: 10 classes) expects an initial loss near log(C)."""
    lines = checks_the_setup(ran)
    assert "log(10)" in next(line for line in lines if line.startswith("initial loss"))


def own_model_check(ran: Ran) -> None:
    """docs/own-model.md: ``check`` takes your own model; the update ratio is per kind, conv weights too."""
    lines = checks_the_setup(ran)
    assert "conv weights" in next(line for line in lines if line.startswith("update"))


def own_model_lr_find(ran: Ran) -> None:
    suggests_an_lr(ran, steps=50)


def own_model_run(ran: Ran) -> None:
    """docs/own-model.md: a study on examples/cnn_digits.py:load is called cnn_digits-<strategy>; its trials train
    the entry points with the model argument given."""
    trials = own(ran.study("cnn_digits-tpe"))
    assert len(trials) == 4 and max(map(epochs, trials)) <= 2
    within(trials, "lr", 1e-3, 1e-2)
    configs = [record(trial)["config"] for trial in trials]
    assert {(config["model"], config["dataset"], json.dumps(config["model_args"])) for config in configs} == {
        ("examples/cnn_digits.py:net", "examples/cnn_digits.py:load", '{"width": 8}')}
    printed_the_run(ran, "cnn_digits-tpe")


def own_model_export(ran: Ran) -> None:
    """docs/own-model.md: the exported config names the entry points and model_args."""
    config = exports_the_best(ran, "cnn.json", "cnn_digits-tpe")["config"]
    assert (config["model"], config["dataset"], config["model_args"]) == (
        "examples/cnn_digits.py:net", "examples/cnn_digits.py:load", {"width": 8})


def own_model_train_again(ran: Ran) -> None:
    trains_again(ran, "cnn.json")


def cnn_spec(ran: Ran) -> None:
    """studies/cnn.toml: TPE over lr and the net's width, an int range as both bounds are ints."""
    spec = spec_file(ran, "studies/cnn.toml")
    study = ran.study(spec["study"]["name"])
    trials = own(study)
    assert len(trials) == spec["study"]["n_trials"] and study_record(study)["spec"]["study"]["strategy"] == "tpe"
    assert all(trial["params"].keys() == {"lr", "model_args.width"} for trial in trials)
    width = spec["space"]["model_args"]["width"]
    assert all(json.loads(trial["distributions"]["model_args.width"])["name"] == "IntDistribution" for trial in trials)
    within(trials, "model_args.width", width["low"], width["high"])
    assert {record(trial)["config"]["model"] for trial in trials} == {spec["train"]["model"]}
    printed_the_run(ran, spec["study"]["name"])


def regression_train(ran: Ran) -> None:
    """docs/own-model.md, regression: no accuracy (none in the table), a val_loss near 0.04 in 3 epochs against a
    target variance of 0.7."""
    rows = epoch_rows(ran, 3)
    assert {row["val_acc"] for row in rows} == {"-"} and "val_acc" not in ran.output.splitlines()[-1]
    assert round(float(rows[-1]["val_loss"]), 2) == 0.04
    found_file = importlib.util.spec_from_file_location("regression_example", ran.folder / "examples/regression.py")
    assert found_file is not None and found_file.loader is not None
    example = importlib.util.module_from_spec(found_file)
    found_file.loader.exec_module(example)
    y_val = example.load()[3]
    assert round(float(y_val.var()), 1) == 0.7


def regression_spec(ran: Ran) -> None:
    """studies/regression.toml: mse on val_loss; adamw or sgd, momentum in sgd trials only; val_acc null in JSON."""
    spec = spec_file(ran, "studies/regression.toml")
    study = ran.study(spec["study"]["name"])
    trials = own(study)
    assert len(trials) == spec["study"]["n_trials"] and study["directions"] == ["MINIMIZE"]
    assert {record(trial)["config"]["loss"] for trial in trials} == {"mse"}
    assert {trial["params"]["optimizer"] for trial in trials} == {"adamw", "sgd"}
    assert all(("momentum" in trial["params"]) == (trial["params"]["optimizer"] == "sgd") for trial in trials)
    shown = json.loads(ran.again(f"hpsearch show {spec['study']['name']} --trial 0 --json").stdout)
    assert {epoch["val_acc"] for epoch in shown["record"]["history"]} == {None}
    printed_the_run(ran, spec["study"]["name"])


def grid(ran: Ran) -> None:
    """docs/pruning.md and strategies.md: a log-spaced grid of --grid-points per parameter over the default ranges
    (README: lr and weight decay 1e-05 to 0.1) ends when the grid is done (not at the default 30 trials);
    hyperband stops trials early; each trial reports its metric after each epoch."""
    study = ran.study("digits-grid")
    trials = own(study)
    assert study_record(study)["spec"]["study"]["pruner"] == "hyperband"
    assert len(trials) == 9 and len({(trial["params"]["lr"], trial["params"]["weight_decay"]) for trial in trials}) == 9
    for name in ("lr", "weight_decay"):
        points = sorted({trial["params"][name] for trial in trials})
        assert len(points) == 3 and math.isclose(points[0], 1e-5) and math.isclose(points[-1], 0.1), points
        assert math.isclose(points[1] / points[0], points[2] / points[1]), points
    assert any(record(trial)["status"] == "pruned" and epochs(trial) < 5 for trial in trials)
    assert all(epochs(trial) == len(record(trial)["history"]) for trial in trials)
    printed_the_run(ran, "digits-grid")


def textbook_spec(ran: Ran) -> None:
    """docs/specs.md: a TOML spec, flags override it (--n-trials 6), the rest of it holds."""
    spec = spec_file(ran, "studies/textbook.toml")
    study = ran.study(spec["study"]["name"])
    trials = own(study)
    assert spec["study"]["n_trials"] != 6 and len(trials) == 6
    assert study_record(study)["spec"]["study"]["metric"] == spec["study"]["metric"] == "val_acc"
    assert study["directions"] == ["MAXIMIZE"] and max(map(epochs, trials)) == spec["train"]["epochs"]
    for name in ("lr", "weight_decay"):
        within(trials, name, spec["space"][name]["low"], spec["space"][name]["high"])
    printed_the_run(ran, spec["study"]["name"])


def two_workers(ran: Ran) -> None:
    """docs/storage.md: ``--jobs 2`` runs the study's trials in two worker processes."""
    trials = own(ran.study("par"))
    assert len(trials) == 12 and max(map(epochs, trials)) <= 3
    assert len(other_processes(trials)) == 2
    printed_the_run(ran, "par")


def postgres_run(ran: Ran) -> None:
    trials = own(ran.study("digits-tpe"))
    assert len(trials) == 16 and len(other_processes(trials)) == 2
    printed_the_run(ran, "digits-tpe")


def postgres_worker(ran: Ran) -> None:
    """A further worker on a study that holds its --n-trials: the study never holds more."""
    assert "error" not in ran.output and len(own(ran.study("digits-tpe"))) == 16


def cnn_workers(ran: Ran) -> None:
    """docs/storage.md: workers import the spec's examples/ files."""
    spec = spec_file(ran, "studies/cnn.toml")
    trials = own(ran.study("cnn-jobs"))
    assert len(trials) == 2 and {trial["state"] for trial in trials} == {"COMPLETE"}
    assert {record(trial)["config"]["model"] for trial in trials} == {spec["train"]["model"]}
    other_processes(trials)
    printed_the_run(ran, "cnn-jobs")


def cnn_worker(ran: Ran) -> None:
    """A worker started in the folder holding examples/ trusts the files there (no error) and keeps the budget."""
    assert "error" not in ran.output and len(own(ran.study("cnn-jobs"))) == 2


def lr_find_plot(ran: Ran) -> None:
    """docs/strategies.md: suggestion and search range; --plot draws the curve."""
    suggests_an_lr(ran, steps=100)
    assert is_png(ran.folder / "lr.png")


def first_trials_from_the_test(study: dict[str, Any]) -> dict[str, Any]:
    """docs/strategies.md: the LR range test is stored with the study; it gives the lr range, two orders of
    magnitude below its suggestion up to just under the blow-up, and the first trials, its suggestion and a
    neighbour 3x each side, with weight decay 1e-2."""
    test = study_record(study)["lr_range_test"]
    suggestion = test["suggestion"]
    ranges = {json.dumps(json.loads(trial["distributions"]["lr"])["attributes"]) for trial in study["trials"]}
    [lr_range] = [json.loads(text) for text in ranges]
    assert test["diverged_at"] is not None, "the test's loss blew up on digits, so its range applies"
    assert math.isclose(lr_range["low"], suggestion / 100) and suggestion < lr_range["high"] < test["diverged_at"]
    first = sorted(trial["params"]["lr"] for trial in study["trials"][:3])
    assert all(math.isclose(lr, expected) for lr, expected in zip(first, [suggestion / 3, suggestion, suggestion * 3],
                                                                    strict=True)), first
    assert {trial["params"]["weight_decay"] for trial in study["trials"][:3]} == {1e-2}
    return lr_range


def tpe_lr_find(ran: Ran) -> None:
    study = ran.study("digits-tpe")
    trials = own(study)
    assert len(trials) == 10 and max(map(epochs, trials)) == 5
    first_trials_from_the_test(study)
    printed_the_run(ran, "digits-tpe")


def coarse_to_fine(ran: Ran) -> None:
    """docs/strategies.md: an LR test, a coarse stage of 6 trials, two fine stages of 3 each (--n-trials 12),
    each stage a study of its own whose lr range narrows from the coarse one's."""
    family = ran.family("digits-coarse-to-fine")
    assert [study["name"].split("/")[-1] for study in family] == ["1-coarse", "2-fine", "3-fine"]
    assert [len(own(study)) for study in family] == [6, 3, 3]
    coarse_range = first_trials_from_the_test(family[0])

    def log_width(lr_range: dict[str, float]) -> float:
        return math.log(lr_range["high"] / lr_range["low"])

    for study in family[1:]:
        fine_range = json.loads(study["trials"][-1]["distributions"]["lr"])["attributes"]
        assert log_width(fine_range) < log_width(coarse_range), (study["name"], fine_range, coarse_range)
    printed_the_run(ran, "digits-coarse-to-fine")


def warmup_cosine(ran: Ran) -> None:
    """docs/training.md: the warmup-cosine schedule rises to the peak lr then decays (stepped per batch)."""
    lrs = [float(row["lr"]) for row in epoch_rows(ran, 5)]
    assert max(lrs) <= 3e-3 and lrs[0] < max(lrs) and lrs[-1] < max(lrs) and len(set(lrs)) == 5, lrs


def synthetic_json(ran: Ran) -> None:
    """docs/training.md: synthetic:n=,d=,classes= samples of shape (D,) into the mlp's --hidden widths, as JSON."""
    result = json.loads(ran.output)
    config = result["config"]
    assert (config["dataset"], config["hidden"], config["clip"]) == ("synthetic:n=2000,d=32,classes=4", [64, 32], 1.0)
    assert result["status"] == "completed" and len(result["history"]) == result["epochs"] == config["epochs"]
    widths = [32, 64, 32, 4]  # d=32 in, the hidden widths, classes=4 out: weights and biases of each layer
    assert result["num_params"] == sum(w_in * w_out + w_out for w_in, w_out in itertools.pairwise(widths))


def checkpoint(ran: Ran) -> None:
    """docs/training.md: --checkpoint saves each epoch; the same command resumes (here from its last epoch)."""
    rows = epoch_rows(ran, 4)
    assert (ran.folder / "run.ckpt").is_file()
    again = json.loads(ran.again(f"{ran.doc.command} --json").stdout)
    assert again["resumed_from"] == 4
    assert all(shows(row["val_loss"], epoch["val_loss"]) for row, epoch in zip(rows, again["history"], strict=True))


def sgd(ran: Ran) -> None:
    epoch_rows(ran, 3)


def bf16(ran: Ran) -> None:
    """docs/training.md: bf16 runs on a CPU too."""
    epoch_rows(ran, 2)


def stream(ran: Ran) -> None:
    """docs/training.md, feed: on a CPU a streamed run gives the same numbers as one on the device."""
    rows = epoch_rows(ran, 2)
    on_device = ran.doc.command.replace("--feed stream --num-workers 2", "--feed device").replace(
        "--epochs 2", "--epochs 1")
    assert on_device != ran.doc.command
    [epoch] = json.loads(ran.again(f"{on_device} --json").stdout)["history"]
    assert shows(rows[0]["val_loss"], epoch["val_loss"]) and shows(rows[0]["train_loss"], epoch["train_loss"])


def artifacts(ran: Ran) -> None:
    """docs/reports.md: with --artifacts each completed trial stores its learning-curve PNG in hpsearch-artifacts/
    beside the default storage; every run leaves a note on its study, each trial one as it finishes."""
    study = ran.study("curves")
    trials = own(study)
    assert len(trials) == 6
    stored = {trial["number"]: [json.loads(value) for key, value in trial["system_attrs"].items()
                                if key.startswith("artifacts:")] for trial in trials}
    assert all(len(stored[trial["number"]]) == 1 for trial in trials if trial["state"] == "COMPLETE"), stored
    files = [ran.folder / "hpsearch-artifacts" / meta["artifact_id"] for metas in stored.values() for meta in metas]
    assert all(is_png(path) for path in files)
    assert len(files) == len(list((ran.folder / "hpsearch-artifacts").iterdir()))
    notes = study["system_attrs"]  # optuna-dashboard's: the study's, and each trial's by its id
    trial_notes = {key for key in notes if re.fullmatch(r"dashboard:\d+:note_str:0", key)}
    assert "dashboard:note_str:0" in notes and len(trial_notes) == len(trials), sorted(notes)
    printed_the_run(ran, "curves")



def objective_study(ran: Ran, n_trials: int) -> list[dict[str, Any]]:
    """README and docs/objective.md: examples/optuna_objective.py runs unchanged as each trial, maximizing its
    validation accuracy; the study is named after the objective's module, its trials hold the example's own params."""
    study = ran.study("optuna_objective-tpe")
    trials = own(study)
    assert study["directions"] == ["MAXIMIZE"] and len(trials) == n_trials
    assert all({"n_layers", "optimizer"} <= trial["params"].keys() for trial in trials)
    assert all(0 <= trial["values"][0] <= 1 for trial in trials if trial["state"] == "COMPLETE")
    return trials


def objective_readme(ran: Ran) -> None:
    objective_study(ran, 3)


def objective_jobs(ran: Ran) -> None:
    """docs/objective.md: --jobs 2 runs the objective in worker processes, asha pruning it."""
    assert other_processes(objective_study(ran, 4))


def objective_show(ran: Ran) -> None:
    """``show``: the objective study's trials, best first, by its value."""
    rows = table(ran.output, "trial")
    assert [int(row["trial"]) for row in rows][:1] == [ranked(ran.family("optuna_objective-tpe"))[0][1]["number"]]


def objective_export(ran: Ran) -> None:
    """``export``: the best trial's params and value, and the objective that scored them."""
    exported = json.loads((ran.folder / "objective.json").read_text())
    _, best = ranked(ran.family("optuna_objective-tpe"))[0]
    assert exported["objective"] == "examples/optuna_objective.py:objective"
    assert exported["params"] == best["params"] and exported["value"] == best["values"][0]


def objective_again(ran: Ran) -> None:
    """``train --config`` of an objective's export calls it with the best params fixed: the same value on CPU."""
    exported = json.loads((ran.folder / "objective.json").read_text())
    value = found(r"with the exported params: \S+ (\S+)", ran.output)[1]
    assert shows(value, exported["value"]), ran.output


def rmsprop_train(ran: Ran) -> None:
    """docs/own-model.md: the user's RMSprop factory trains the 6 epochs, to a good accuracy on digits."""
    rows = epoch_rows(ran, 6)
    assert float(rows[-1]["val_acc"]) > 0.9, ran.output


def own_optimizer_check(ran: Ran) -> None:
    """docs/own-model.md: ``check`` builds the user's optimizer and checks the setup with it."""
    checks_the_setup(ran)


def f1_run(ran: Ran) -> None:
    """docs/own-model.md: a study maximizing the macro-F1 that the user's metrics report: each complete trial's
    value is its last epoch's macro_f1."""
    study = ran.study("f1")
    trials = own(study)
    assert study["directions"] == ["MAXIMIZE"] and len(trials) == 3
    for trial in trials:
        if trial["state"] == "COMPLETE":
            assert trial["values"][0] == record(trial)["history"][-1]["user_metrics"]["macro_f1"]


def f1_show(ran: Ran) -> None:
    """``show --trial 0``: the epochs, with macro_f1 and top3_acc columns."""
    rows = table(ran.output, "macro_f1")
    assert rows and all("top3_acc" in row for row in rows), ran.output


def rmsprop_spec(ran: Ran) -> None:
    """studies/rmsprop.toml: RMSprop's alpha searched (optimizer_args.alpha), macro-F1 maximized."""
    study = ran.study("rmsprop")
    trials = own(study)
    assert study["directions"] == ["MAXIMIZE"] and len(trials) == 4
    within(trials, "optimizer_args.alpha", 0.9, 0.99)
    within(trials, "lr", 3e-4, 3e-3)


CLAIMS: dict[str, Callable[[Ran], None]] = {
    # the user's objective, optimizer and metrics (README, docs/objective.md, docs/own-model.md)
    "hpsearch run --objective examples/optuna_objective.py:objective --direction maximize --n-trials 3":
        objective_readme,
    "hpsearch run --objective examples/optuna_objective.py:objective --direction maximize --n-trials 4 --jobs 2 "
    "--pruner asha": objective_jobs,
    "hpsearch show optuna_objective-tpe": objective_show,
    "hpsearch export optuna_objective-tpe --out objective.json": objective_export,
    "hpsearch train --config objective.json": objective_again,
    "hpsearch train --optimizer examples/rmsprop_optimizer.py:rmsprop --optimizer-arg alpha=0.98 --lr 2e-3 --epochs 6 "
    "--batch-size 64 --hidden 64": rmsprop_train,
    "hpsearch check --optimizer examples/rmsprop_optimizer.py:adamw_no_decay_on_biases --optimizer-arg beta2=0.99 "
    "--lr 1e-3": own_optimizer_check,
    "hpsearch run --metrics examples/f1_metric.py:metrics --metric macro_f1 --direction maximize --study f1 "
    "--n-trials 3 --epochs 2": f1_run,
    "hpsearch show f1 --trial 0": f1_show,
    "hpsearch run --spec studies/rmsprop.toml": rmsprop_spec,
    # README.md
    "hpsearch run --strategy random --n-trials 20 --lr-range 1e-4 1e-1 --wd-range 1e-5 1e-2 --epochs 5": tour_run,
    "hpsearch studies": tour_studies,
    "hpsearch show digits-random --top 5": tour_show_top,
    "hpsearch show digits-random --top 3 --json": tour_show_json,
    "hpsearch show digits-random --trial 0": tour_show_trial,
    "hpsearch report digits-random --out reports/random": tour_report,
    "hpsearch export digits-random --out best.json": tour_export,
    "hpsearch train --config best.json": tour_train_again,
    "hpsearch train --model examples/cnn_digits.py:net --dataset examples/cnn_digits.py:load --epochs 3 --lr 3e-3 "
    "--batch-size 64": own_model_train,
    # docs/batched.md, diagnosis.md
    "hpsearch run --strategy random --n-trials 8 --epochs 3 --study stacked --batch 4": stacked,
    "hpsearch check": diagnosis_check,
    # docs/own-model.md
    "hpsearch check --model examples/cnn_digits.py:net --dataset examples/cnn_digits.py:load --lr 3e-3 "
    "--batch-size 64": own_model_check,
    "hpsearch lr-find --model examples/cnn_digits.py:net --dataset examples/cnn_digits.py:load --batch-size 64 "
    "--steps 50": own_model_lr_find,
    "hpsearch run --strategy tpe --n-trials 4 --epochs 2 --lr-range 1e-3 1e-2 --model examples/cnn_digits.py:net "
    "--dataset examples/cnn_digits.py:load --model-arg width=8 --batch-size 64": own_model_run,
    "hpsearch export cnn_digits-tpe --out cnn.json": own_model_export,
    "hpsearch train --config cnn.json": own_model_train_again,
    "hpsearch run --spec studies/cnn.toml": cnn_spec,
    "hpsearch train --model examples/regression.py:net --dataset examples/regression.py:load --loss mse --epochs 3 "
    "--lr 3e-3 --batch-size 64": regression_train,
    "hpsearch run --spec studies/regression.toml": regression_spec,
    # docs/pruning.md, reports.md, specs.md
    "hpsearch run --strategy grid --grid-points 3 --pruner hyperband --epochs 5": grid,
    "hpsearch run --strategy tpe --n-trials 6 --epochs 3 --study curves --artifacts": artifacts,
    "hpsearch run --spec studies/textbook.toml --n-trials 6": textbook_spec,
    # docs/storage.md
    "hpsearch run --strategy random --n-trials 12 --epochs 3 --jobs 2 --study par": two_workers,
    f"hpsearch run --strategy tpe --n-trials 16 --epochs 3 --jobs 2 --storage {DOCS_POSTGRES}": postgres_run,
    f"hpsearch worker digits-tpe --storage {DOCS_POSTGRES}": postgres_worker,
    "hpsearch run --spec studies/cnn.toml --study cnn-jobs --n-trials 2 --jobs 2": cnn_workers,
    "hpsearch worker cnn-jobs": cnn_worker,
    # docs/strategies.md
    "hpsearch lr-find --plot lr.png": lr_find_plot,
    "hpsearch run --strategy tpe --lr-find --n-trials 10 --epochs 5": tpe_lr_find,
    "hpsearch run --strategy coarse-to-fine --n-trials 12 --epochs 3": coarse_to_fine,
    # docs/training.md
    "hpsearch train --lr 3e-3 --epochs 5 --schedule warmup-cosine --warmup 0.1": warmup_cosine,
    "hpsearch train --dataset synthetic:n=2000,d=32,classes=4 --hidden 64,32 --clip 1.0 --json": synthetic_json,
    "hpsearch train --epochs 4 --checkpoint run.ckpt": checkpoint,
    "hpsearch train --optimizer sgd --momentum 0.9 --nesterov --lr 0.05 --epochs 3": sgd,
    "hpsearch train --model examples/cnn_digits.py:net --dataset examples/cnn_digits.py:load --precision bf16 "
    "--epochs 2 --lr 3e-3 --batch-size 64": bf16,
    "hpsearch train --model examples/cnn_digits.py:net --dataset examples/cnn_digits.py:load --feed stream "
    "--num-workers 2 --epochs 2 --lr 3e-3 --batch-size 64": stream,
}


# --- the tests ---------------------------------------------------------------------------------------------------


def test_readme_opens_with_the_install_and_the_test_command() -> None:
    blocks = bash_blocks(README)
    assert "pip install -e ." in blocks[0] and "hpsearch " in blocks[0]
    assert "pytest" in blocks[1]


def test_readme_says_how_a_machine_without_a_gpu_avoids_the_cuda_build() -> None:
    """From PyPI, pip takes torch's CUDA build (a venv of ~6 GB); the CPU-only index is named before the install."""
    text = README.read_text()
    cpu_index = text.find("--index-url https://download.pytorch.org/whl/cpu")
    assert 0 <= cpu_index < text.find("Install the development tools"), "README must name the CPU-only torch install"


def test_the_docs_show_commands_and_mark_the_skipped_ones() -> None:
    """The parser finds the docs' commands, and a skip-ci mark is read as one (not run, not lost)."""
    commands = all_doc_commands()
    files = {command.file for command in commands}
    assert {"README.md", "docs/own-model.md", "docs/storage.md"} <= files
    skipped = {command.command: command.skip for command in commands if command.skip}
    assert skipped.get("hpsearch dashboard", "").startswith("a server")


def test_each_command_is_shown_once() -> None:
    """A command written twice would run twice in CI: include README.md's section instead (--8<--)."""
    counts = Counter(command.command for command in all_doc_commands())
    assert [command for command, n in counts.items() if n > 1] == []


def test_each_command_run_has_its_claims_checked_and_each_check_a_command() -> None:
    """A new command in the docs needs a check of what its text says it does; a check outlives no command."""
    run = {command.command for command in all_doc_commands() if not command.skip}
    assert sorted(run - CLAIMS.keys()) == [], "add a check of what the docs say these do to CLAIMS"
    assert sorted(CLAIMS.keys() - run) == [], "these checks name commands the docs no longer show"


@pytest.mark.parametrize("doc", [as_param(command) for command in all_doc_commands()])
def test_doc_command_does_what_its_text_says(doc: DocCommand, block_runs: Callable[[DocCommand], Ran]) -> None:
    check = CLAIMS.get(doc.command)
    assert check is not None, f"{doc.id}: no check of what the docs say it does in CLAIMS"
    ran = block_runs(doc)
    assert ran.result.exit_code == 0, ran.failure()
    check(ran)
