"""Every module imports, and the package has no import cycle, lazy imports included.

The graph is read from the source (every ``import`` and ``from ... import`` of a
napari_wne module, at any depth, except under ``if TYPE_CHECKING:``), so a cycle hidden in
a function-level import is found too.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import napari_wne

PACKAGE = Path(napari_wne.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py"))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> set[str]:
    """The napari_wne modules `module` imports (a package's __init__ counts as the package)."""
    path = PACKAGE.parent.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("napari_wne"))
            elif isinstance(child, ast.ImportFrom):
                found.update(_targets(module, is_package, child))
            visit(child)

    visit(ast.parse(path.read_text()))
    known = set(MODULES)
    resolved = set()
    for name in found:  # "from . import x" may name a module or an attribute of the package
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            resolved.add(name)
    return resolved


def _targets(module: str, is_package: bool, node: ast.ImportFrom) -> set[str]:
    if node.level == 0:
        base = node.module or ""
        if not base.startswith("napari_wne"):
            return set()
    else:
        parts = module.split(".")
        if not is_package:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    names = {f"{base}.{a.name}" for a in node.names}
    submodules = {n for n in names if n in set(MODULES)}
    # "from . import run" imports a module; "from . import denoise" runs the package's __init__
    return submodules if submodules == names else names | {base}


GRAPH = {m: _imports(m) for m in MODULES}


@pytest.mark.parametrize("module", [m for m in MODULES if not m.endswith("__main__")])
def test_every_module_imports(module):
    importlib.import_module(module)


def _cycle() -> list[str] | None:
    """One import cycle between modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for module in MODULES:
        if module not in state and (found := walk(module)):
            return found
    return None


def test_no_import_cycles():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    """The check itself can fail: a made-up back edge is found."""
    monkeypatch.setitem(GRAPH, "napari_wne.wne", GRAPH["napari_wne.wne"] | {"napari_wne.api"})
    assert _cycle() is not None


def test_the_command_line_starts_without_torch():
    """``napari-wne --help``, ``--version``, ``denoise --help`` and ``models`` import no
    torch (it alone takes seconds), so they answer at once; it is imported when a model is
    built or an image denoised."""
    code = (
        "import contextlib, io, sys\n"
        "from napari_wne.cli import main\n"
        "for argv in (['--help'], ['--version'], ['denoise', '--help'], ['models']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "print(sorted(m for m in ('torch', 'dask', 'zarr', 'napari') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stderr
