"""The import direction of ARCHITECTURE.md, checked on the source (and ruff's lint with it).

web and worker sit on top; jobs uses models, notifications, cache and queue;
cache, queue and notifications use models at most; models imports none of the
others. Nothing below web imports Flask.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "searchjobs"

# part -> parts it may import (besides itself); leaf modules are listed as parts too
ALLOWED = {
    "errors": set(),
    "defaults": set(),
    "config": {"defaults", "errors"},
    "logs": set(),
    "embedded": {"errors"},
    "models": {"errors", "defaults"},
    "queue": {"models", "defaults", "errors"},
    "cache": {"models", "defaults", "errors", "metrics", "queue"},  # metrics: a leaf; queue: REDIS_UNAVAILABLE
    "metrics": {"models", "defaults", "errors", "queue"},
    "notifications": {"models", "defaults", "errors", "config"},
    "jobs": {"models", "notifications", "cache", "queue", "metrics", "config", "defaults", "errors"},
    "worker": {"jobs", "models", "notifications", "cache", "queue", "metrics", "config", "defaults", "errors",
               "logs"},
    "web": {"jobs", "models", "notifications", "cache", "queue", "metrics", "config", "defaults", "errors",
            "logs"},
    "migrations": {"models"},
    "cli": {"*"},
    "__main__": {"cli"},
    "__init__": set(),
}


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            bits = name.split(".")
            if bits[0] == "searchjobs" and len(bits) > 1:
                found.add((bits[1], node.lineno))
            if bits[0] == "flask":
                found.add(("flask", node.lineno))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way(path: Path):
    part = part_of(path)
    allowed = ALLOWED[part]
    for target, line in imported_parts(path):
        if target == part or "*" in allowed:
            continue
        if target == "flask":
            assert part == "web", f"{path}:{line}: only searchjobs.web may import Flask"
            continue
        if target in ("__version__",):
            continue
        assert target in allowed, f"{path}:{line}: {part} must not import searchjobs.{target}"


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is installed with the test extra")
def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run([ruff, "check", "searchjobs", "tests", "bench"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
