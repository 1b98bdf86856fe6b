"""Entry points: ``package.module:attr`` or ``path/to/file.py:attr`` strings resolved to the user's callables.

The strings, not the callables, are what a config and a stored spec hold, so every worker resolves
them itself. A callable handed over from Python (a notebook) is registered under its own
``module:qualname`` string, so a config still holds a string and this process resolves it back to
the very object; another process cannot, and is told to use a file or a module instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from hpsearch.errors import ConfigError, EntryPointError

__all__ = ["as_entry_point", "in_process_only", "is_entry_point", "is_trusted", "resolve", "trust_for"]

# Callables given from Python, by the string a config holds for them.
_IN_PROCESS: dict[str, Callable[..., Any]] = {}


def is_entry_point(text: str) -> bool:
    """Whether ``text`` has the shape ``module:attr`` or ``file.py:attr`` (not whether it imports), or names a
    callable handed over from Python."""
    if text in _IN_PROCESS:
        return True
    where, sep, attr = text.rpartition(":")
    if not (sep and where and attr and all(part.isidentifier() for part in attr.split("."))):
        return False
    return where.endswith(".py") or all(part.isidentifier() for part in where.split("."))


def as_entry_point(value: str | Callable[..., Any], field: str) -> str:
    """The string a config holds for ``value``: a string as it is, a callable registered under its name."""
    if isinstance(value, str):
        return value
    if not callable(value):
        raise ConfigError(f"{field} must be a name, an entry point (module:attr, file.py:attr) or a callable, "
                          f"got {value!r}")
    module = getattr(value, "__module__", None) or "__main__"
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or type(value).__name__
    key = f"{module}:{name}"
    _IN_PROCESS[key] = value
    return key


def in_process_only(entry_point: str) -> bool:
    """Whether ``entry_point`` names a callable handed over from Python that another process cannot import."""
    return entry_point in _IN_PROCESS and (entry_point.startswith("__main__:") or "<locals>" in entry_point
                                           or not _importable(entry_point))


def resolve(entry_point: str, field: str) -> Callable[..., Any]:
    """Import ``entry_point`` and return its callable; a missing module, file or attribute is one error line."""
    if entry_point in _IN_PROCESS:
        return _IN_PROCESS[entry_point]
    if not is_entry_point(entry_point):
        raise EntryPointError(f"{field} {entry_point!r} is neither a built-in name nor an entry point "
                              f"(package.module:attr or path/to/file.py:attr)")
    where, _, attr = entry_point.rpartition(":")
    module = _import(where, entry_point, field)
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise EntryPointError(f"{field} {entry_point!r}: {where} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise EntryPointError(f"{field} {entry_point!r}: {attr} is a {type(target).__name__}, not a callable")
    return target


def trust_for(entry_point: str) -> str:
    """What ``hpsearch worker --trust`` needs to run ``entry_point``: its file, or its top-level package."""
    where = entry_point.rpartition(":")[0]
    return where if where.endswith(".py") else where.split(".")[0]


def is_trusted(entry_point: str, trusted: Iterable[str], cwd: str | Path | None = None) -> bool:
    """A worker's rule: a file inside its working directory (relative, no ``..``), a file named in
    ``trusted``, or a module of a package named in ``trusted``."""
    where = entry_point.rpartition(":")[0]
    trusted = set(trusted)
    if where.endswith(".py"):
        path = Path(where)
        if where in trusted or str(path.resolve()) in {str(Path(t).resolve()) for t in trusted if t.endswith(".py")}:
            return True
        return not path.is_absolute() and ".." not in path.parts
    return any(where == package or where.startswith(package + ".") for package in trusted)


def _import(where: str, entry_point: str, field: str) -> Any:
    """The module ``where`` names: a file path (against the working directory) or a dotted module name."""
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise EntryPointError(f"{field} {entry_point!r}: no file {where} (looked in {os.getcwd()})")
        resolved = path.resolve()
        # One module per file, under a name of its own, so that two files called task.py do not clash.
        name = f"hpsearch_user_{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, resolved)
        if spec is None or spec.loader is None:
            raise EntryPointError(f"{field} {entry_point!r}: cannot import {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            with _first_on_path(str(resolved.parent)):
                spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # a script's sys.exit() at import ends nothing but the import
            del sys.modules[name]
            raise EntryPointError(f"{field} {entry_point!r}: importing {where} raised "
                                  f"{type(exc).__name__}: {exc}") from None
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        raise EntryPointError(f"{field} {entry_point!r}: no module named {exc.name!r} "
                              f"(working directory {os.getcwd()})") from None
    except (Exception, SystemExit) as exc:
        raise EntryPointError(f"{field} {entry_point!r}: importing {where} raised {type(exc).__name__}: {exc}"
                              ) from None


@contextlib.contextmanager
def _first_on_path(folder: str) -> Iterator[None]:
    """``folder`` first on ``sys.path`` while a file of it is imported, as ``python file.py`` has it, so that
    the file's own imports find its neighbours; taken off again after, so that a worker's import path (and a
    notebook's) changes no further than the import of a file it trusts."""
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # already gone if the file took it off itself
            sys.path.remove(folder)


def _importable(entry_point: str) -> bool:
    where = entry_point.rpartition(":")[0]
    if where.endswith(".py"):
        return Path(where).is_file()
    return importlib.util.find_spec(where.split(".")[0]) is not None
