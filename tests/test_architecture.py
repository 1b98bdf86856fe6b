"""The layers of docs/architecture.md, read from the code's own imports: the picture cannot drift.

engine (torch) ↓ search (Optuna) ↓ presentation ↓ cli; the modules at the package's top (errors, choices, …) lie
under all of them, and the package root re-exports the public names for users, so nothing inside imports it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hpsearch"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
LAYERS = {"engine": 1, "search": 2, "presentation": 3, "cli": 4}
FACADE = {"hpsearch", "hpsearch.__main__"}  # the public names and `python -m hpsearch`: above everything
PRIVATE_HOME = "hpsearch.search.storages.optuna_private"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    """0 for the base modules at the top of the package, then each layer's number; the facade above all."""
    if module in FACADE:
        return 99
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 2 or parts[-1] in LAYERS else 0


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in the file, lazy ones inside functions too; ``from a import b`` gives
    ``a.b`` when b is a module, else ``a``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield node.lineno, full if full in MODULES else node.module


def test_every_module_sits_in_a_layer() -> None:
    for module in MODULES:
        parts = module.split(".")
        assert module in FACADE or len(parts) == 2 or parts[1] in LAYERS, f"{module} is in no layer"


@pytest.mark.parametrize("module", sorted(set(MODULES) - FACADE))
def test_no_import_points_up_a_layer_or_at_the_package_root(module: str) -> None:
    upward = [f"line {line}: {target}" for line, target in imports(MODULES[module])
              if target.split(".")[0] == "hpsearch" and (target == "hpsearch" or layer(target) > layer(module))]
    assert upward == [], f"{module} (layer {layer(module)}) imports above itself: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("hpsearch.engine")))
def test_the_engine_knows_no_optuna(module: str) -> None:
    assert [target for _, target in imports(MODULES[module]) if target.split(".")[0] == "optuna"] == []


OPTUNA_PRIVATE_METHODS = {match for file in Path(optuna.__file__).parent.rglob("*.py")
                          for match in re.findall(r"^    def (_[a-z]\w*)\(", file.read_text(), flags=re.M)}


def optuna_private_names(path: Path) -> Iterator[str]:
    """Optuna's private names the file touches: imports from a private module or of a private name, attribute
    chains such as ``optuna.storages._rdb``, and methods that override a private method of an Optuna class."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "optuna":
            segments = node.module.split(".") + [alias.name for alias in node.names]
            yield from (f"{node.module}: {s}" for s in segments if s.startswith("_") and not s.startswith("__"))
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("optuna") and "._" in a.name)
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            chain = ast.unparse(node)
            if chain.startswith("optuna."):
                yield chain
        elif isinstance(node, ast.ClassDef) and node.bases:
            yield from (f"{node.name}.{item.name} overrides Optuna's private method" for item in node.body
                        if isinstance(item, ast.FunctionDef) and item.name in OPTUNA_PRIVATE_METHODS)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith(PRIVATE_HOME)))
def test_optuna_private_api_stays_in_its_one_home(module: str) -> None:
    assert list(optuna_private_names(MODULES[module])) == []


def test_the_fence_itself_is_seen_by_this_test() -> None:
    """The check above finds the private names optuna_private does use (else it proves nothing)."""
    assert list(optuna_private_names(MODULES[PRIVATE_HOME]))


def test_docs_architecture_names_every_module_and_only_modules_that_exist() -> None:
    named = set(re.findall(r"`(hpsearch/[\w/]+\.py)`", ARCHITECTURE.read_text()))
    actual = {str(path.relative_to(PACKAGE.parent)) for path in MODULES.values()}
    assert sorted(named - actual) == [], "docs/architecture.md names modules that do not exist"
    assert sorted(actual - named) == [], "docs/architecture.md does not name these modules"
