"""How the platform's modules import each other, by the folder of the place they run in
(docs/architecture.md, "Where the code runs"): no cycle, the leaf of names imports nothing
of ours, what the hub loads leaves out what only `make up` runs (the runner, the image
builder, the pipeline's container engine), portable/ needs the standard library only."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from mlops_ide.machine.state.tools import Tools

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "mlops_ide"
# run inside Airflow's virtualenv: the auth manager, at its place and at its old dotted path
NEEDS_AIRFLOW = {
    "mlops_ide.in_airflow.auth_manager",
    "mlops_ide.airflow_hub_auth",
    "mlops_ide.in_airflow.preview_bundle",
}
# What jupyterhub_config.py loads, and the classes it names by their dotted path.
HUB_ENTRY_POINTS = ("mlops_ide.hub.modes", "mlops_ide.hub.local_spawner", "mlops_ide.hub.kubernetes_spawner")
ONLY_MAKE_UP = "mlops_ide.supervisor"  # the runner, `make up`, `make users`, the engine, the image builder


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that `name` imports anywhere in its text (a lazy import too: a
    cycle hidden in a function is still a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            submodules = {f"{module}.{alias.name}" for alias in node.names} & known
            if len(submodules) < len(node.names):  # names of the module itself, not only its submodules
                found.add(module)
            found.update(submodules)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def cycle_in(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` as the modules along it, or [] when there is none."""
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = "open"
        trail.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                return [*trail[trail.index(other) :], other]
            if other not in state and (found := visit(other)):
                return found
        state[name] = "done"
        trail.pop()
        return []

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return []


def test_no_module_of_ours_is_in_an_import_cycle() -> None:
    assert cycle_in(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_the_names_import_nothing_of_ours() -> None:
    assert import_graph()["mlops_ide.names"] == set()


def loaded_after_importing(python: str, *names: str) -> set[str]:
    program = "import importlib, sys\n"
    program += "".join(f"importlib.import_module({name!r})\n" for name in names)
    program += "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('mlops_ide'))))"
    done = subprocess.run(
        [python, "-c", program], env={"PYTHONPATH": str(SRC)}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_every_module_imports_in_its_virtualenv() -> None:
    names = sorted(set(modules()) - NEEDS_AIRFLOW)
    assert set(names) <= loaded_after_importing(sys.executable, *names)
    airflow_side = sorted(NEEDS_AIRFLOW)
    assert set(airflow_side) <= loaded_after_importing(str(Tools.load().airflow_python), *airflow_side)


def test_the_hub_loads_neither_the_supervisor_nor_the_image_builder_nor_the_engine() -> None:
    loaded = loaded_after_importing(sys.executable, *HUB_ENTRY_POINTS)
    assert set(HUB_ENTRY_POINTS) <= loaded
    assert sorted(name for name in loaded if name.startswith(ONLY_MAKE_UP)) == []


def test_the_portable_pieces_need_the_standard_library_only() -> None:
    """They run by path in whatever Python is at hand (a git hook's, CI's, a user's server)."""
    portable = sorted(name for name in modules() if name.startswith("mlops_ide.portable."))
    program = "import importlib, sys\n" + "".join(f"importlib.import_module({name!r})\n" for name in portable)
    done = subprocess.run(  # -S: no site-packages, -I: no user site, no PYTHONPATH
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"sys_path = {str(SRC)!r}\nimport sys\nsys.path.insert(0, sys_path)\n" + program,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert portable
    assert done.returncode == 0, done.stderr
    assert all(
        imports_of(name, path, set(modules())) <= set(portable) | {"mlops_ide"}
        for name, path in modules().items()
        if name in portable
    )


def test_pyproject_lists_every_package() -> None:
    pyproject = tomllib.loads((SRC.parent / "pyproject.toml").read_text())
    packages = {module_name(path.parent / "__init__.py") for path in PACKAGE.rglob("__init__.py")}

    assert set(pyproject["tool"]["setuptools"]["packages"]) == {"startup", *packages}


def test_bench_imports_no_test_module() -> None:
    """Benchmarks share the tests' helpers (tests/support/), never a test file."""
    imported = sorted(
        f"{path.name}: {node.module}"
        for path in (SRC.parent / "bench").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.")
        if not node.module.startswith("tests.support.")
    )

    assert imported == []
