"""The packages are layers: each imports only the layers below it, and no module takes
part in an import cycle, so each layer can be read and tested without the ones above.

    ciel (the command)  →  infra, k8s, migrate  →  toolchain  →  foundation
    ciel (the command)  →  lab (the local Scaleway)  →  toolchain (the binaries it runs)  →  foundation
"""

from __future__ import annotations

import ast
from pathlib import Path

from foundation.paths import REPO_ROOT

PACKAGES = ("foundation", "toolchain", "lab", "infra", "k8s", "migrate", "ciel")
# What each package may import from the project (besides itself).
ALLOWED = {
    "foundation": set(),
    "toolchain": {"foundation"},
    "lab": {"foundation", "toolchain"},
    "infra": {"foundation", "toolchain", "k8s"},
    "k8s": {"foundation", "infra"},
    "migrate": {"foundation"},
    "ciel": {"foundation", "toolchain", "lab", "infra", "k8s", "migrate"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py")
            if "rendered" not in path.parts}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules imported anywhere in the file (function-level imports included:
    a lazy import is still a dependency)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import submodule` depends on the submodule; `from mod import name` on mod.
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        found.update(name for name in names if name in modules)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_every_package_imports_only_the_layers_below_it():
    wrong = sorted(f"{module} imports {imported}" for module, imported_set in graph().items()
                   for imported in imported_set
                   if (top := imported.split(".")[0]) != module.split(".")[0]
                   and top not in ALLOWED[module.split(".")[0]])
    assert wrong == []


def test_no_lower_layer_imports_the_command_package():
    assert [m for m, imported in graph().items() if not m.startswith("ciel")
            and any(i.split(".")[0] == "ciel" for i in imported)] == []


def cycles_in(edges: dict[str, set[str]]) -> list[str]:
    cycles = []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    cycles.append(" → ".join(path + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return cycles


def test_no_module_is_part_of_an_import_cycle():
    assert cycles_in(graph()) == []


def test_the_checker_sees_a_cycle_and_a_wrong_layer(tmp_path):
    """The checks above can fail: on a planted cycle and upward import they do."""
    modules = {"migrate.a": tmp_path / "a.py", "migrate.b": tmp_path / "b.py", "ciel.cli": tmp_path / "c.py"}
    modules["migrate.a"].write_text("from migrate import b\n")
    modules["migrate.b"].write_text("def f():\n    import migrate.a\n    from ciel.cli import app\n")
    modules["ciel.cli"].write_text("")
    assert imports_of(modules["migrate.a"], modules) == {"migrate.b"}
    edges = {name: imports_of(path, modules) for name, path in modules.items()}
    assert edges["migrate.b"] == {"migrate.a", "ciel.cli"}
    assert "migrate.a → migrate.b → migrate.a" in cycles_in(edges)
