"""Every command-line tool runs as ``python -m tools.<name>`` from the repository root, without touching
sys.path; started as a file instead, it says how to start it (exit code 2, no traceback)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

#: every tool: a module of tools/ that runs as a program, or a package with a __main__.py
TOOLS = sorted([path.stem for path in (ROOT / "tools").glob("*.py") if '__name__ == "__main__"' in path.read_text()]
               + [path.parent.name for path in (ROOT / "tools").glob("*/__main__.py")])


@pytest.mark.parametrize("name", TOOLS)
def test_tool_runs_as_a_module(name):
    proc = subprocess.run([sys.executable, "-m", f"tools.{name}", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")


def test_no_tool_edits_sys_path():
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "tools").rglob("*.py")
                 if "sys.path" in path.read_text()]
    assert offenders == []


@pytest.mark.parametrize("name", ("parse_results", "plots", "sweep", "download_fdrd"))
def test_tool_started_as_a_file_says_how_to_start_it(name, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / f"{name}.py"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"python -m tools.{name}" in proc.stderr
