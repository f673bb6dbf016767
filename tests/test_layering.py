"""The house's floors, read from the import statements (ast, nothing is imported): each file may import only
its own floor or lower ones, so a shared piece never depends on what is built on it. And no file points at
something a user's clone does not have (the reference material outside the repository, a machine's paths)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGES = ("trainers", "datasets", "tools")
#: floor of a module, by the first rule its dotted name matches (a prefix ending in "." matches a package)
FLOORS: tuple[tuple[str, int], ...] = (
    ("trainers.errors", 0), ("trainers.atomic_io", 0), ("trainers.serialization", 0), ("trainers.bpe", 0),
    ("trainers.backbone.", 1), ("trainers.losses", 1), ("trainers.retrieval_metrics", 1),
    ("trainers.adapters", 1), ("trainers.dcar_components.", 1),                       # shared pieces, no Dassl
    ("trainers.engine.", 2),                                                          # the Dassl trainer base
    ("trainers.", 3), ("trainers", 3),                                                # the methods
    ("datasets.", 4), ("datasets", 4),
    ("tools.", 5), ("tools", 5),
)
#: datasets stand beside the trainers, not above them: they use only the bottom floor of trainers/
DATASETS_MAY_IMPORT = ("trainers.errors", "trainers.atomic_io", "trainers.serialization", "trainers.bpe")


def floor(module: str) -> int:
    for prefix, level in FLOORS:
        if module == prefix or (prefix.endswith(".") and module.startswith(prefix)):
            return level
    raise AssertionError(f"no floor for {module}: add it to FLOORS")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path, root: Path = ROOT) -> set[str]:
    """The project modules a file imports, relative imports resolved (``from . import x`` counts as ``pkg.x``)."""
    package = list(path.relative_to(root).parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if node.module:
                found.add(module)
            else:
                found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def source_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_project_imports_are_resolved(tmp_path):
    """The parser itself, on a hand-made file: absolute, relative and package-relative imports."""
    (tmp_path / "trainers" / "backbone").mkdir(parents=True)
    sample = tmp_path / "trainers" / "backbone" / "mod.py"
    sample.write_text("import os\nimport trainers.errors\nfrom . import blocks\nfrom ..engine.config import x\n"
                      "from .. import dpt, vpt\nfrom datasets.coop_split import y\n")
    assert project_imports(sample, tmp_path) == {"trainers.errors", "trainers.backbone.blocks",
                                                 "trainers.engine.config", "trainers.dpt", "trainers.vpt",
                                                 "datasets.coop_split"}


def test_no_lower_floor_imports_a_higher_one():
    violations = []
    for path in source_files():
        importer = module_name(path)
        for imported in sorted(project_imports(path)):
            if floor(imported) > floor(importer):
                violations.append(f"{path.relative_to(ROOT)} (floor {floor(importer)}) imports {imported} "
                                  f"(floor {floor(imported)})")
    assert violations == []


def test_datasets_use_only_the_bottom_floor_of_trainers():
    violations = [f"{path.relative_to(ROOT)} imports {imported}"
                  for path in (ROOT / "datasets").rglob("*.py") for imported in sorted(project_imports(path))
                  if imported.startswith("trainers") and imported not in DATASETS_MAY_IMPORT]
    assert violations == []


@pytest.mark.parametrize("importer, imported, allowed", [
    ("trainers.backbone.precision", "trainers.engine.trainer", False),
    ("trainers.engine.trainer", "datasets.coop_split", False),
    ("trainers.errors", "trainers.backbone.loading", False),
    ("datasets.fdrd", "tools.results", False),
    ("trainers.engine.checkpoint", "trainers.atomic_io", True),
    ("tools.bench", "trainers", True),
])
def test_the_floors_forbid_what_the_house_forbids(importer, imported, allowed):
    assert (floor(imported) <= floor(importer)) is allowed


#: what a user's clone lacks: the reference material beside the repository, and machine-specific paths
OUTSIDE = re.compile(r"\.\./shared|shared/design|shared/fdrd|(?<![\w.])design/\w+\.md|/work/|/home/\w|/Users/\w")


#: what the project holds (not a virtual environment, data or run folders a user keeps inside the clone)
PROJECT_DIRS = (*PACKAGES, "tests", "scripts", "configs", "docs", ".ci")


def test_no_reference_to_a_file_outside_the_repository():
    files = [path for path in ROOT.iterdir() if path.is_file() and not path.name.startswith(".")] + [
        path for folder in PROJECT_DIRS for path in (ROOT / folder).rglob("*") if path.is_file()]
    hits = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in files
            if path.suffix in (".py", ".sh", ".md", ".yaml", ".txt", ".ini", "") and path.name != "test_layering.py"
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if OUTSIDE.search(line)]
    assert hits == []
