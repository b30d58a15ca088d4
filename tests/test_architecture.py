"""The shape of the package, checked from its source: no import cycles, no upward imports, click and rich only
at the edge (STYLE.md §5-6: the library is the product, the CLI a thin client).

Imports are read with `ast`, including those inside functions (a lazy import is still a dependency); imports
under `if TYPE_CHECKING:` are left out (they never run).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "crlm_response"

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"errors", "vectors", "dates", "models", "roles"}),
    (
        "data in and out",
        {"yamlio", "formats", "sources", "tables", "validate", "readers", "trial", "dicom_sr", "synthetic"}
        | {"writers", "cdisc_writers", "bor", "summary"},
    ),
    ("rule language", {"functions", "metrics", "conditions", "rules"}),
    ("scoring", {"engine", "assessment", "diff", "batch", "engines", "sdtm", "adam", "outputs", "cohort"}),
    ("pictures and text", {"render", "report", "plots"}),
    ("commands", {"options", "runs"}),
    ("entry points", {"cli", "__main__", "__init__"}),
]
LAYER_OF = {module: i for i, (_, modules) in enumerate(LAYERS) for module in modules}


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.glob("*.py"))}


def _imports(tree: ast.Module, known: set[str]) -> tuple[set[str], set[str]]:
    """(modules of the package, top-level third-party packages) a module imports, TYPE_CHECKING blocks aside."""
    inside: set[str] = set()
    outside: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 1:
                if child.module:
                    inside.add(child.module.split(".")[0])
                else:
                    inside.update(alias.name for alias in child.names if alias.name in known)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                outside.add(child.module.split(".")[0])
            elif isinstance(child, ast.Import):
                outside.update(alias.name.split(".")[0] for alias in child.names)
            visit(child)

    visit(tree)
    return inside, outside


@pytest.fixture(scope="module")
def graph() -> dict[str, tuple[set[str], set[str]]]:
    modules = _modules()
    return {name: _imports(tree, set(modules)) for name, tree in modules.items()}


def test_every_module_has_a_layer(graph: dict[str, tuple[set[str], set[str]]]) -> None:
    assert sorted(set(graph) - set(LAYER_OF)) == [], "add the new module to LAYERS"
    assert sorted(set(LAYER_OF) - set(graph)) == [], "a module in LAYERS no longer exists"


def test_no_import_cycles(graph: dict[str, tuple[set[str], set[str]]]) -> None:
    sorter = graphlib.TopologicalSorter({name: inside - {name} for name, (inside, _) in graph.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_no_upward_imports(graph: dict[str, tuple[set[str], set[str]]]) -> None:
    upward = [
        f"{name} ({LAYERS[LAYER_OF[name]][0]}) imports {other} ({LAYERS[LAYER_OF[other]][0]})"
        for name, (inside, _) in graph.items()
        for other in sorted(inside)
        if other in LAYER_OF and LAYER_OF[other] > LAYER_OF[name]
    ]
    assert upward == []


def test_click_only_in_the_cli_and_rich_only_in_cli_and_render(graph: dict[str, tuple[set[str], set[str]]]) -> None:
    assert sorted(name for name, (_, outside) in graph.items() if "click" in outside) == ["cli"]
    assert {name for name, (_, outside) in graph.items() if "rich" in outside} <= {"cli", "render"}


def test_only_the_entry_point_imports_the_cli(graph: dict[str, tuple[set[str], set[str]]]) -> None:
    assert sorted(name for name, (inside, _) in graph.items() if "cli" in inside) == ["__main__"]


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    """The checks above can fail: a lazy import inside a function is seen, a TYPE_CHECKING one is not."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from .errors import CrlmError\n"
        "if TYPE_CHECKING:\n    from .cli import cli\n"
        "def f():\n    from .runs import run_batch\n    import click\n"
    )
    inside, outside = _imports(ast.parse(source), {"errors", "runs", "cli"})
    assert inside == {"errors", "runs"}
    assert outside == {"typing", "click"}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()
