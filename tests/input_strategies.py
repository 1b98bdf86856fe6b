"""Hypothesis strategies for hpsearch's open inputs (spec tables, training settings, entry-point strings) and a
small TOML writer, so that a generated table reaches the package as a user's file does.

The rules below are the documented ones (docs/training.md, docs/specs.md), written out here rather than read
from the package, so that a rule changed in the code shows up as a failing property.
"""

from __future__ import annotations

import json
import keyword
import math
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

# Each numeric setting's documented range: (low, high, low included, high included).
FLOAT_RULES: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0.0, math.inf, False, False),
    "weight_decay": (0.0, math.inf, True, False),
    "warmup": (0.0, 1.0, True, False),
    "min_lr_ratio": (0.0, 1.0, True, True),
    "gamma": (0.0, 1.0, False, True),
    "decay_fraction": (0.0, 1.0, False, True),
    "label_smoothing": (0.0, 1.0, True, False),
    "val_fraction": (0.0, 1.0, False, False),
    "clip": (0.0, math.inf, False, False),
    "momentum": (0.0, 1.0, True, False),
    "beta1": (0.0, 1.0, True, False),
    "beta2": (0.0, 1.0, True, False),
}
INT_MINIMUMS: dict[str, int] = {"epochs": 1, "batch_size": 1, "step_size": 1, "seed": 0, "num_workers": 0,
                                "subset": 1, "num_classes": 1}
WORDS: dict[str, tuple[str, ...]] = {
    "schedule": ("constant", "step", "cosine", "warmup-cosine", "wsd"),
    "optimizer": ("adamw", "adam", "sgd"),
    "precision": ("fp32", "bf16", "fp16"),
    "feed": ("auto", "device", "stream"),
}
STRATEGIES = ("grid", "random", "tpe", "coarse-to-fine")
PRUNERS = ("median", "hyperband", "asha", "none")
METRICS = ("val_loss", "val_acc")
# Settings that only some optimizers have (docs/specs.md): a searched optimizer samples them only where they apply.
FOR_OPTIMIZERS = {"momentum": ("sgd",), "nesterov": ("sgd",), "beta1": ("adam", "adamw"), "beta2": ("adam", "adamw")}
LARGE = 1e6  # bounds generated values that have no upper limit, so they stay readable

ascii_identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name))
# Any Python identifier, Unicode letters included (what str.isidentifier accepts).
identifiers = st.text(st.characters(categories=["Lu", "Ll", "Lt", "Lm", "Lo", "Nl", "Mn", "Mc", "Nd", "Pc"]),
                      min_size=1, max_size=10).filter(str.isidentifier)
dotted = st.lists(identifiers, min_size=1, max_size=3).map(".".join)
# Text a path segment may hold on Linux: no slash, no NUL, not "." or "..".
segments = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="/\x00"), min_size=1,
                   max_size=10).filter(lambda s: s not in (".", ".."))


@st.composite
def file_entry_points(draw: st.DrawFn) -> str:
    """``path/to/file.py:attr``, relative or absolute, through folders whose names hold any character a path may."""
    folders = draw(st.lists(segments, max_size=3))
    stem = draw(segments)
    root = draw(st.sampled_from(["", "/", "./"]))
    return f"{root}{'/'.join([*folders, f'{stem}.py'])}:{draw(dotted)}"


module_entry_points = st.builds(lambda where, attr: f"{where}:{attr}", dotted, dotted)
entry_point_strings = st.one_of(module_entry_points, file_entry_points())


def in_rule(name: str) -> st.SearchStrategy[float]:
    """A float within the documented range of setting ``name``."""
    low, high, low_in, high_in = FLOAT_RULES[name]
    top = min(high, LARGE)
    return st.floats(low, top, exclude_min=not low_in, exclude_max=not high_in and top == high)


def out_of_rule(name: str) -> st.SearchStrategy[float]:
    """A float outside the documented range of setting ``name``: below, above, or not finite."""
    low, high, low_in, high_in = FLOAT_RULES[name]
    outside = [st.floats(max_value=low, exclude_max=low_in, allow_infinity=False, allow_nan=False)
               .filter(lambda v: not (v == low and low_in)),
               st.sampled_from([math.nan, math.inf, -math.inf])]
    if math.isfinite(high):
        outside.append(st.floats(min_value=high, exclude_min=high_in, allow_infinity=False, allow_nan=False))
    return st.one_of(outside)


def ints_from(minimum: int) -> st.SearchStrategy[int]:
    return st.integers(minimum, 10_000)


datasets = st.one_of(
    st.sampled_from(["digits", "mnist", "fashion-mnist", "cifar10", "synthetic"]),
    st.dictionaries(st.sampled_from(["n", "d", "noise"]), st.integers(1, 10**6), max_size=3).flatmap(
        lambda params: st.integers(2, 100).map(
            lambda classes: "synthetic:" + ",".join(f"{k}={v}" for k, v in {**params, "classes": classes}.items()))),
    segments.map(lambda path: f"npz:{path}"),
    entry_point_strings,
)
devices = st.one_of(st.sampled_from(["auto", "cpu", "cuda", "mps"]), st.integers(0, 64).map(lambda n: f"cuda:{n}"))
scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=20))
model_arg_values = st.one_of(scalars, st.lists(scalars, max_size=4))
model_args = st.dictionaries(identifiers, model_arg_values, max_size=3)


@st.composite
def optimizer_settings(draw: st.DrawFn) -> dict[str, Any]:
    """optimizer with momentum and nesterov (sgd) or betas (adam, adamw): each only where it applies."""
    optimizer = draw(st.sampled_from(WORDS["optimizer"]))
    table: dict[str, Any] = {"optimizer": optimizer}
    if optimizer == "sgd":
        momentum = draw(st.none() | in_rule("momentum"))
        if momentum is not None:
            table["momentum"] = momentum
            if momentum > 0:
                table["nesterov"] = draw(st.booleans())
    else:
        for beta in ("beta1", "beta2"):
            value = draw(st.none() | in_rule(beta))
            if value is not None:
                table[beta] = value
    return table


@st.composite
def train_tables(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``[train]`` table as a TOML or JSON file holds it: any subset of the settings, each in its rule."""
    loss = draw(st.sampled_from(["cross-entropy", "mse"]) | entry_point_strings)
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "dataset": datasets, "data_dir": segments, "download": st.booleans(), "subset": ints_from(1),
        "val_fraction": in_rule("val_fraction"), "num_classes": ints_from(1), "feed": st.sampled_from(WORDS["feed"]),
        "num_workers": st.integers(0, 64), "model": st.sampled_from(["mlp", "cnn"]) | entry_point_strings,
        "model_args": model_args, "hidden": st.lists(st.integers(1, 4096), min_size=1, max_size=4),
        "precision": st.sampled_from(WORDS["precision"]), "epochs": ints_from(1), "batch_size": ints_from(1),
        "lr": in_rule("lr"), "weight_decay": in_rule("weight_decay"), "schedule": st.sampled_from(WORDS["schedule"]),
        "warmup": in_rule("warmup"), "min_lr_ratio": in_rule("min_lr_ratio"), "step_size": ints_from(1),
        "gamma": in_rule("gamma"), "decay_fraction": in_rule("decay_fraction"), "clip": in_rule("clip"),
        "seed": st.integers(0, 2**32 - 1), "device": devices,
    }
    if loss == "cross-entropy":
        candidates["label_smoothing"] = in_rule("label_smoothing")
    chosen = draw(st.sets(st.sampled_from(sorted(candidates))))
    table = {name: draw(candidates[name]) for name in sorted(chosen)}
    if draw(st.booleans()):
        table["loss"] = loss
    elif loss != "cross-entropy":
        table.pop("label_smoothing", None)
    if draw(st.booleans()):
        table.update(draw(optimizer_settings()))
    return table


@st.composite
def searched(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A valid ``[space]`` entry for setting ``name``: a range inside its rule (log only where low > 0), or
    choices of its type."""
    if name in WORDS:
        return {"choices": draw(st.lists(st.sampled_from(WORDS[name]), min_size=1, max_size=3, unique=True))}
    if name == "nesterov":
        return {"choices": draw(st.lists(st.booleans(), min_size=1, max_size=2, unique=True))}
    if name in ("batch_size", "step_size"):
        low, high = sorted(draw(st.lists(ints_from(1), min_size=2, max_size=2, unique=True)))
        return {"low": low, "high": high, "log": draw(st.booleans())}
    low, high = sorted(draw(st.lists(in_rule(name), min_size=2, max_size=2, unique=True)))
    return {"low": low, "high": high, "log": low > 0 and draw(st.booleans())}


SEARCHABLE = ("lr", "weight_decay", "warmup", "min_lr_ratio", "clip", "gamma", "decay_fraction", "batch_size",
              "step_size", "schedule", "optimizer", "momentum", "nesterov", "beta1", "beta2", "label_smoothing",
              "precision")


@st.composite
def model_arg_spaces(draw: st.DrawFn) -> dict[str, Any]:
    """``[space.model_args]``: int ranges (both bounds ints), float ranges, or choices of any TOML scalar."""
    ints = st.lists(st.integers(-1000, 1000), min_size=2, max_size=2, unique=True).map(sorted)
    floats = st.lists(st.floats(-LARGE, LARGE), min_size=2, max_size=2, unique=True).map(sorted)
    entry = st.one_of(ints.map(lambda b: {"low": b[0], "high": b[1]}),
                      floats.map(lambda b: {"low": b[0], "high": b[1]}),
                      st.lists(scalars, min_size=1, max_size=3).map(lambda c: {"choices": c}))
    return draw(st.dictionaries(identifiers, entry, min_size=1, max_size=2))


@st.composite
def spec_tables(draw: st.DrawFn) -> dict[str, Any]:
    """The tables of a valid spec file: [study], [space], [train], [model_args], [coarse_to_fine], each optional.

    The space searches settings the train table leaves to it: an optimizer setting is searched only with an
    optimizer it applies to, and with the optimizer searched, the train table fixes none of them.
    """
    train = draw(train_tables())
    names = draw(st.sets(st.sampled_from(SEARCHABLE), max_size=4))
    if draw(st.booleans()):  # the optimizer searched with settings only some optimizers have
        names |= {"optimizer", *draw(st.sets(st.sampled_from(sorted(FOR_OPTIMIZERS)), min_size=1))}
    if "label_smoothing" in names and train.get("loss", "cross-entropy") != "cross-entropy":
        names.discard("label_smoothing")
    space = {name: draw(searched(name)) for name in sorted(names)}
    optimizers = space.get("optimizer", {}).get("choices", [train.get("optimizer", "adamw")])
    if "optimizer" in space:
        for setting in FOR_OPTIMIZERS:
            train.pop(setting, None)
    for setting, apply_to in FOR_OPTIMIZERS.items():
        if setting in space and not set(optimizers) & set(apply_to):
            del space[setting]
    if "momentum" in space:
        train.pop("nesterov", None)  # a range down to 0 would give Nesterov no momentum
    if space.get("nesterov", {}).get("choices", [False]) != [False]:
        space["momentum"] = {"low": 0.5, "high": 0.9}  # Nesterov needs momentum > 0 in every trial
    if draw(st.booleans()):
        space["model_args"] = draw(model_arg_spaces())
    strategy = draw(st.sampled_from(STRATEGIES))
    stages_table = {}
    if strategy == "coarse-to-fine" and draw(st.booleans()):
        stages_table = {"stages": draw(st.integers(2, 4)), "coarse_trials": draw(st.integers(1, 50)),
                        "fine_trials": draw(st.integers(1, 50)), "keep": draw(st.integers(1, 10)),
                        "margin": draw(st.floats(0, 3))}
    stages = stages_table.get("stages", 3)  # coarse-to-fine needs a trial a stage or more
    study_keys: dict[str, st.SearchStrategy[Any]] = {
        "name": st.text(min_size=1, max_size=20).filter(str.strip), "metric": st.sampled_from(METRICS),
        "pruner": st.sampled_from(PRUNERS), "pruner_warmup": ints_from(1), "n_trials": st.integers(stages, 500),
        "timeout": st.floats(0, LARGE, exclude_min=True), "seed": st.integers(0, 2**32 - 1),
        "grid_points": st.integers(2, 6), "lr_find": st.booleans(),
    }
    study = {key: draw(study_keys[key]) for key in sorted(draw(st.sets(st.sampled_from(sorted(study_keys)))))}
    tables: dict[str, Any] = {"study": {"strategy": strategy, **study}, "train": train}
    if space:
        tables["space"] = space
    if draw(st.booleans()):
        tables["model_args"] = draw(model_args)
    if stages_table:
        tables["coarse_to_fine"] = stages_table
    return tables


# Any value a TOML file can hold (dates aside): what a user may write where a setting is expected.
toml_values = st.recursive(scalars | st.floats(allow_nan=True, allow_infinity=True),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3),
                           max_leaves=6)


def toml_text(tables: Mapping[str, Any]) -> str:
    """``tables`` as a TOML file: one ``[table]`` each, every key quoted, values inline."""
    lines = []
    for table, values in tables.items():
        if not isinstance(values, Mapping):
            lines.insert(0, f"{_key(table)} = {_value(values)}")  # a top-level key must come before any table
            continue
        lines.append(f"[{_key(table)}]")
        lines.extend(f"{_key(key)} = {_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(_value(item) for item in value) + "]"


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes, with DEL escaped too (TOML forbids it raw)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
