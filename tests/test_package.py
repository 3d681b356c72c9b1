"""The package's shape: one import name, imports that only point down, a wheel that works alone."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = {
    "polycrack": REPO / "solver",
    "polycrack.meshing": REPO / "meshing",
    "polycrack.params": REPO / "params",
}

#: layer of each top-level part: a module may import (at module level) only its own layer or lower
LAYERS = {
    "errors": 0,
    "units": 0,
    "params": 0,
    "meshing": 0,
    "cases": 0,
    "collective": 0,
    "config": 1,
    "sizing": 1,
    "numerics": 2,
    "physics": 3,
    "post": 4,
    "problems": 5,
    "workflow": 6,
    "verification": 6,
    "cli": 7,
    "__main__": 7,
    "__init__": 7,
}


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    out = {}
    for pkg, root in ROOTS.items():
        for f in root.rglob("*.py"):
            if pkg == "polycrack" and f.relative_to(root).parts[0] in ("meshing", "params"):
                continue
            rel = f.relative_to(root).with_suffix("").parts
            name = ".".join((pkg, *rel))
            out[name.removesuffix(".__init__")] = f
    return out


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """polycrack modules imported by one module (absolute dotted names)."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("polycrack"):
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("polycrack"))
    return found


def _part(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_other_top_level_names():
    """The wheel's top-level names are `polycrack` only (no generic `solver`, `meshing`, `params`)."""
    text = (REPO / "pyproject.toml").read_text()
    assert 'polycrack = "solver"' in text and "namespaces" not in text


def test_imports_point_down():
    """Module-level imports never go up a layer; numerics and meshing know no physics."""
    mods = _modules()
    bad = []
    for name, path in mods.items():
        me = _part(name)
        for imp in _imports(name, path, top_level_only=True):
            them = _part(imp)
            if imp == "polycrack" or them not in LAYERS or me not in LAYERS:
                continue
            if LAYERS[them] > LAYERS[me]:
                bad.append(f"{name} -> {imp}")
    for name, path in mods.items():  # also function-level imports for these two
        if _part(name) in ("meshing", "numerics"):
            allowed = {
                "meshing": {"meshing", "errors"},
                "numerics": {"numerics", "errors", "units"},
            }
            for imp in _imports(name, path, top_level_only=False):
                if _part(imp) not in allowed[_part(name)] and imp != "polycrack":
                    bad.append(f"{name} -> {imp}")
    assert not bad, "imports that point up:\n" + "\n".join(sorted(bad))


def test_no_module_level_import_cycle():
    mods = _modules()
    graph = {n: {i for i in _imports(n, p, True) if i in mods and i != n} for n, p in mods.items()}
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for m in graph[n]:
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, n, m]))
            if not state.get(m):
                visit(m, [*stack, n])
        state[n] = 2

    for n in graph:
        if not state.get(n):
            visit(n, [])


def test_python_m_polycrack_help():
    r = subprocess.run(
        [sys.executable, "-m", "polycrack", "--help"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )
    assert r.returncode == 0 and "usage: polycrack" in r.stdout


@pytest.mark.serial
@pytest.mark.slow
def test_wheel_top_level_names_and_data(tmp_path):
    """Build the wheel: only `polycrack/` at the top, with the demo case and verification cases."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("polycrack-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"polycrack"}, tops
    for needed in (
        "polycrack/cases/demo.yaml",
        "polycrack/cases/sphere_electrochem.yaml",
        "polycrack/verification/electrochem.py",
        "polycrack/params/nmc811_parks2023.yaml",
        "polycrack/params/data/nmc811_lattice_maerker2019.tsv",
        "polycrack/__main__.py",
    ):
        assert needed in names, needed


def _workflow_files():
    return sorted((REPO / "solver" / "workflow").glob("*.py")) + [REPO / "solver" / "cli.py"]


def test_run_workflow_functions_are_short():
    """No function of the run workflow over ~80 lines (the driver is a set of small steps)."""
    long = []
    for f in _workflow_files():
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.FunctionDef) and n.name != "build_parser":
                if n.end_lineno - n.lineno + 1 > 85:
                    long.append(f"{f.name}:{n.name} {n.end_lineno - n.lineno + 1} lines")
    assert not long, long


def test_workflow_reads_no_private_attribute_of_another_object():
    """``obj._x`` only on ``self`` (no reaching into a stepper's or problem's internals)."""
    bad = []
    for f in _workflow_files():
        for n in ast.walk(ast.parse(f.read_text())):
            if (
                isinstance(n, ast.Attribute)
                and n.attr.startswith("_")
                and not n.attr.startswith("__")
                and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))
            ):
                bad.append(f"{f.name}:{n.lineno} .{n.attr}")
    assert not bad, bad
