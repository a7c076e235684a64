"""The architecture's rules that the import contracts (.importlinter) cannot express."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "tunelab"


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if p.name != "__init__.py")


def test_migrations_import_nothing_of_tunelab() -> None:
    """A migration must keep meaning what it meant when written, so it never imports
    live code (whose DDL or constants may change later)."""
    for path in _modules(PACKAGE / "db" / "migrations" / "versions"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "tunelab" for n in names), (path.name, names)


def test_routes_take_services_as_dependencies() -> None:
    """Routes never read app.state and never build a service per request: what they
    use arrives through api.deps."""
    service_classes = {
        "FileStore", "JobService", "InferenceService", "EmbeddingService", "VectorStores",
        "Searcher", "ResponsesService", "Catalog", "Registry", "KeyStore", "Worker",
    }  # fmt: skip
    for path in _modules(PACKAGE / "api" / "routes") + _modules(PACKAGE / "api" / "dashboard"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                assert node.attr != "state", f"{path.name}:{node.lineno} reads app.state"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in service_classes, (
                    f"{path.name}:{node.lineno} builds a {node.func.id}"
                )
            if isinstance(node, ast.FunctionDef):
                assert node.name != "setup", f"{path.name} has a setup() hook"


def test_the_documented_layers_are_the_enforced_ones() -> None:
    """docs/architecture.md draws the layers that .importlinter enforces: the same
    modules, in the same order, with the same `:` / `|` joins."""
    root = PACKAGE.parent
    config = (root / ".importlinter").read_text()
    block = config.split("layers =", 1)[1].split("\n\n", 1)[0]
    enforced = [line.strip() for line in block.strip().splitlines()]

    doc = (root / "docs" / "architecture.md").read_text()
    drawing = doc.split("## Layers", 1)[1].split("```", 2)[1]
    tokens = re.findall(r"tunelab\.[\w.]+|[:|]", drawing)
    documented = [
        " ".join(tokens[i : j + 1]) for i, j in _runs(tokens)
    ]  # one layer: modules joined by `:` or `|`, possibly over several lines
    assert documented == enforced


def _runs(tokens: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each layer: a module followed by any `: m` / `| m` pairs."""
    runs, i = [], 0
    while i < len(tokens):
        j = i
        while j + 2 < len(tokens) and tokens[j + 1] in ":|":
            j += 2
        runs.append((i, j))
        i = j + 1
    return runs
