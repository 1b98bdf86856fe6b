"""Properties of entry-point strings: ``path/to/file.py:attr`` and ``package.module:attr`` of any shape resolve to
what they name and say what a worker must trust, any other text is one EntryPointError (never another exception),
and a callable handed over from Python comes back as itself."""

from __future__ import annotations

import contextlib
import importlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from input_strategies import ascii_identifiers, dotted, entry_point_strings, segments

from hpsearch.engine import entry_points
from hpsearch.engine.config import TrainConfig
from hpsearch.engine.entry_points import (
    as_entry_point,
    in_process_only,
    is_entry_point,
    is_trusted,
    resolve,
    trust_for,
)
from hpsearch.errors import ConfigError, EntryPointError
from hpsearch.search.spec import StudySpec

# No __name inside a class: Python mangles it to _Class__name, so no attribute has the name written.
attr_paths = st.lists(ascii_identifiers.filter(lambda name: not name.startswith("__")), min_size=1, max_size=2).map(
    ".".join)


def define(attr: str) -> str:
    """Python source defining the callable ``attr`` names (``f`` or ``Outer.f``), which returns ``attr``."""
    outer, _, inner = attr.rpartition(".")
    if not outer:
        return f"def {inner}():\n    return {attr!r}\n"
    return f"class {outer}:\n    @staticmethod\n    def {inner}():\n        return {attr!r}\n"


@contextlib.contextmanager
def imports_undone() -> Iterator[None]:
    """Modules imported and import paths added inside are gone after, so examples do not see each other's."""
    modules, path = set(sys.modules), list(sys.path)
    try:
        yield
    finally:
        for name in set(sys.modules) - modules:
            del sys.modules[name]
        sys.path[:] = path
        importlib.invalidate_caches()


@given(st.lists(segments, max_size=2), segments, attr_paths, st.booleans())
@example(["my project"], "train:net", "net", False)  # a colon in the file's name: the study name kept all of it
def test_a_file_entry_point_resolves_to_the_callable_it_names(folders: list[str], stem: str, attr: str,
                                                              absolute: bool) -> None:
    with tempfile.TemporaryDirectory() as root, contextlib.chdir(root), imports_undone():
        file = Path(*folders, f"{stem}.py")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(define(attr))
        where = str(file.resolve()) if absolute else str(file)
        entry_point = f"{where}:{attr}"
        assert is_entry_point(entry_point)
        assert resolve(entry_point, "model")() == attr
        assert trust_for(entry_point) == where
        assert is_trusted(entry_point, []) is not absolute  # a relative file is the worker's own folder's
        assert is_trusted(entry_point, [where])
        assert StudySpec(train=TrainConfig(dataset=entry_point)).study_name == f"{stem}-tpe"


@given(st.lists(ascii_identifiers, min_size=1, max_size=3), attr_paths, ascii_identifiers)
def test_a_module_entry_point_resolves_and_is_trusted_by_its_package_alone(parts: list[str], attr: str,
                                                                           other: str) -> None:
    package = f"hpsearch_props_{parts[0]}"  # a name no installed module has
    where = ".".join([package, *parts[1:]])
    with tempfile.TemporaryDirectory() as root, imports_undone():
        folder = Path(root, *where.split("."))
        folder.mkdir(parents=True)
        for level in range(1, len(where.split(".")) + 1):
            Path(root, *where.split(".")[:level], "__init__.py").touch()
        (folder / "__init__.py").write_text(define(attr))
        sys.path.insert(0, root)
        entry_point = f"{where}:{attr}"
        assert is_entry_point(entry_point)
        assert resolve(entry_point, "loss")() == attr
        assert trust_for(entry_point) == package
        assert is_trusted(entry_point, [package]) and is_trusted(entry_point, [where])
        assert not is_trusted(entry_point, [package[:-1], package + other])  # names that merely start the same
        assert not is_trusted(entry_point, [])
        assert StudySpec(train=TrainConfig(dataset=entry_point)).study_name == f"{where.rpartition('.')[2]}-tpe"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with files an entry point may name: good, broken, exiting, and a folder called x.py."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "ok.py").write_text("number = 1\n" + define("f") + define("K.m"))
    (folder / "broken.py").write_text("raise RuntimeError('broken on import')\n")
    (folder / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (folder / "x.py").mkdir()
    return folder


_PIECES = ["ok", "broken", "exits", "x", "os", "path", "json", "dumps", "nothing", ".py", ".", ":", "/", "..", "f",
           "number", "K", "m", " ", "é", "1", "\x00"]


@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=7).map("".join) | st.text(max_size=12))
@example("exits.py:f")  # a file that calls sys.exit() on import: SystemExit left the process
@example("ok.py:number")
@example("os.path:join")
def test_any_text_resolves_to_a_callable_or_is_an_entry_point_error(project: Path, text: str) -> None:
    with contextlib.chdir(project), imports_undone():
        try:
            target = resolve(text, "dataset")
        except EntryPointError as exc:
            assert str(exc).startswith(f"dataset {text!r}")
        else:
            assert callable(target) and is_entry_point(text)


@given(st.text(max_size=12).filter(lambda t: ":" not in t) | entry_point_strings.map(lambda e: e.replace(":", "/")))
def test_text_without_a_colon_is_no_entry_point(text: str) -> None:
    assert not is_entry_point(text)


@contextlib.contextmanager
def registry_undone() -> Iterator[None]:
    """Callables handed over inside are forgotten after, so that no example's stand-in answers for a real name."""
    held = dict(entry_points._IN_PROCESS)
    try:
        yield
    finally:
        entry_points._IN_PROCESS.clear()
        entry_points._IN_PROCESS.update(held)


@given(st.sampled_from(["__main__", "json", "notebook.tasks"]) | dotted,
       st.sampled_from(["<lambda>", "make.<locals>.net"]) | dotted)
def test_a_callable_from_python_is_held_as_a_string_that_resolves_back_to_it(module: str, qualname: str) -> None:
    def net() -> None: ...

    net.__module__, net.__qualname__ = module, qualname
    with registry_undone():
        held = as_entry_point(net, "model")
        assert resolve(held, "model") is net and is_entry_point(held)
        config = TrainConfig(model=net)
        assert config.model == held and TrainConfig.from_mapping(config.to_dict()).model == held
        if module == "__main__" or "<locals>" in qualname:
            assert in_process_only(held)  # a worker process could not import it, even from an importable module


@given(st.one_of(st.integers(), st.floats(), st.lists(st.integers(), max_size=2), st.none()))
def test_neither_a_string_nor_a_callable_is_a_config_error_naming_the_field(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        as_entry_point(value, "loss")
    assert str(caught.value).startswith("loss must be") and repr(value) in str(caught.value)

