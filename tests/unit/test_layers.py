"""The import rules of the layout, checked on the source (and ruff's lint with it).

Every module of searchjobs sits in one tier. A module imports only modules of
lower tiers, or modules of its own package in its own tier; so the domain
packages (jobs, notifications, catalog, intake) never import each other at
their own level, the entry points (web, worker) never import each other, and
no import runs back up. Only searchjobs.web imports Flask. No module-level
import cycle exists.
"""

from __future__ import annotations

import ast
import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "searchjobs"

# Bottom to top. Patterns are module names under searchjobs ("jobs.store"); a package's
# __init__ is its own name ("intake"). Each module matches exactly one pattern.
TIERS: list[tuple[str, list[str]]] = [
    ("leaves", ["__init__", "errors", "defaults", "logs", "metrics", "links"]),
    ("servers", ["embedded", "embedded.*"]),
    ("settings", ["config"]),
    ("plumbing", ["db", "db.*", "queue"]),
    ("migrations", ["migrations", "migrations.*"]),
    ("domain", ["jobs", "jobs.store", "jobs.cache",
                "notifications", "notifications.outbox", "notifications.phone", "notifications.messages",
                "notifications.base", "notifications.console", "notifications.twilio", "notifications.senders",
                "catalog", "catalog.store", "catalog.descriptor", "catalog.demo", "catalog.demo.*", "catalog.backends",
                "catalog.loading", "catalog.embedders",
                "intake", "intake.*", "clients"]),
    ("process", ["runtime"]),
    ("work", ["jobs.lifecycle", "jobs.search", "notifications.send", "catalog.load"]),
    ("services", ["service", "overview"]),
    ("entry points", ["web", "web.*", "worker", "worker.*"]),
    ("commands", ["cli", "cli.*"]),
    ("program", ["__main__"]),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" and len(rel.parts) > 1 else rel.parts
    return ".".join(parts)


def tier_of(module: str) -> int:
    found = [i for i, (_, patterns) in enumerate(TIERS) for p in patterns if fnmatch.fnmatchcase(module, p)]
    assert found, f"searchjobs.{module} is in no tier: add it to TIERS"
    assert len(set(found)) == 1, f"searchjobs.{module} is in more than one tier"
    return found[0]


def package_of(module: str) -> str:
    return module.split(".")[0]


def _exists(module: str) -> bool:
    base = PACKAGE.joinpath(*module.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def absolute_module(path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of what `from ... import` reads: `from ..web import api` in jobs/cache.py is
    searchjobs.web (relative imports are held to the same rules as absolute ones)."""
    if node.level == 0:
        return node.module or ""
    package = ["searchjobs", *path.relative_to(PACKAGE).parent.parts]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path) -> set[tuple[str, int]]:
    """(module under searchjobs, line) for each import of searchjobs, plus ("flask", line); imports
    inside functions (lazy) and relative ones included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and absolute_module(path, node):
            module = absolute_module(path, node)
            for alias in node.names:  # `from searchjobs.jobs import store` imports the module jobs.store
                full = f"{module}.{alias.name}"
                inner = full.split(".", 1)[1] if "." in full else ""
                targets.append(full if full.startswith("searchjobs.") and _exists(inner) else module)
        for name in targets:
            bits = name.split(".")
            if bits[0] == "searchjobs" and len(bits) > 1 and bits[1] != "__version__":
                found.add((".".join(bits[1:]), node.lineno))
            elif bits[0] == "searchjobs":
                found.add(("__init__", node.lineno))
            if bits[0] == "flask":
                found.add(("flask", node.lineno))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down(path: Path):
    module = module_name(path)
    tier = tier_of(module)
    for target, line in imports_of(path):
        if target == "flask":
            assert package_of(module) == "web", f"{path}:{line}: only searchjobs.web may import Flask"
            continue
        if target == module or module.startswith(target + ".") and target == package_of(module):
            continue  # a module may import its own package
        target_tier = tier_of(target)
        where = f"{path}:{line}: {module} ({TIERS[tier][0]}) imports {target} ({TIERS[target_tier][0]})"
        if target_tier == tier:
            assert package_of(target) == package_of(module), where + ": same tier, another package"
        else:
            assert target_tier < tier, where + ": upward"


def test_the_rule_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    scratch = tmp_path / "searchjobs"
    (scratch / "jobs").mkdir(parents=True)
    (scratch / "web").mkdir()
    for init in (scratch / "__init__.py", scratch / "jobs" / "__init__.py", scratch / "web" / "__init__.py"):
        init.write_text("")
    (scratch / "web" / "api.py").write_text("")
    (scratch / "jobs" / "store.py").write_text("")
    module = scratch / "jobs" / "cache.py"
    module.write_text("def later():\n    from searchjobs.web import api\n\n"
                      "def relative():\n    from ..web import api\n    from . import store\n    from .. import web\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", scratch)
    assert imports_of(module) == {("web.api", 2), ("web.api", 5), ("jobs.store", 6), ("web", 7)}


def test_no_import_cycles():
    graph = {module_name(p): {t for t, _ in imports_of(p) if t != "flask"} for p in SOURCES}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_every_module_has_one_tier():
    for path in SOURCES:
        tier_of(module_name(path))


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is installed with the test extra")
def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run([ruff, "check", "searchjobs", "tests", "bench"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
