"""The layout of DESIGN.md holds: no import cycle, and no module imports a higher layer.

Every import counts, including those inside functions (a lazy import is still a dependency).
A new module must be placed in a layer here before it can land."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
FIRST_PARTY = ("pipeline", "features", "synthetic", "rules", "models", "evaluation", "reporting", "cli", "cli_show", "cli_base", "cli_panel")

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("pipeline core", (
        "pipeline", "pipeline.contract", "pipeline.errors", "pipeline.identifiers", "pipeline.config",
        "pipeline.keys", "pipeline.schema", "pipeline.warehouse", "pipeline.validate", "pipeline.lock",
        "pipeline.facts", "pipeline.preflight", "pipeline.ingest", "pipeline.link", "pipeline.quality", "pipeline.retention", "pipeline.safe_cells",
        "pipeline.decision_file", "pipeline.decisions",
    )),
    # The synthetic world sits beside the features: it may import them, they never import it.
    ("features and synthetic data", ("features", "synthetic", "pipeline.generate")),
    ("rules", ("rules",)),
    # The back-test's outcomes, metrics and fairness serve the model too: evaluation sits below it.
    ("evaluation", ("evaluation",)),
    ("models", ("models",)),
    ("reporting", ("reporting",)),
    ("pipeline orchestration", ("pipeline.run", "pipeline.runs", "pipeline.explain", "pipeline.workspace", "pipeline.demo")),
    ("cli", ("cli", "cli_show", "cli_base", "cli_panel")),
]
# Imports forbidden within a layer: (importer prefix, imported prefix).
FORBIDDEN = [("features", "synthetic"), ("features", "pipeline.generate")]


def module_files() -> dict[str, Path]:
    files = {name: REPO / f"{name}.py" for name in FIRST_PARTY if name.startswith("cli")}
    for root in (name for name in FIRST_PARTY if not name.startswith("cli")):
        for path in sorted((REPO / root).rglob("*.py")) if (REPO / root).is_dir() else []:
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """First-party modules imported anywhere in the file (top level, functions, TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pipeline import contract` imports the module pipeline.contract
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] in FIRST_PARTY)
    found.discard(name)
    return found


def layer_of(module: str) -> int | None:
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    return rank


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (depth-first search, colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for importer, imported in sorted(graph.items()):
        for target in sorted(imported):
            low, high = layer_of(importer), layer_of(target)
            if low is None or high is None:
                continue  # reported by test_every_module_has_a_layer
            if high > low:
                problems.append(f"{importer} ({LAYERS[low][0]}) imports {target} ({LAYERS[high][0]})")
            for a, b in FORBIDDEN:
                if (importer == a or importer.startswith(a + ".")) and (target == b or target.startswith(b + ".")):
                    problems.append(f"{importer} imports {target}, which it must never import")
    return problems


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: {t for t in imports_of(name, path, known) if t in known or layer_of(t) is not None}
            for name, path in files.items()}


def test_every_module_has_a_layer():
    unplaced = [m for m in module_files() if layer_of(m) is None]
    assert not unplaced, f"place these modules in a layer of tests/test_layers.py (and DESIGN.md): {unplaced}"


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_a_higher_layer():
    assert violations(import_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"pipeline.contract": {"pipeline.validate"}, "pipeline.validate": {"pipeline.contract"}},
         ["pipeline.contract", "pipeline.validate", "pipeline.contract"]),
        ({"pipeline.a": {"pipeline.b"}, "pipeline.b": {"pipeline.c"}, "pipeline.c": set()}, None),
    ],
)
def test_the_cycle_check_finds_a_cycle(graph, expected):
    assert find_cycle(graph) == expected


def test_the_layer_check_finds_upward_and_forbidden_imports():
    graph = {"pipeline.facts": {"features.build", "pipeline.contract"}, "features.build": {"synthetic.world"},
             "rules.score": {"features.build"}, "synthetic.world": {"rules.score"}}
    assert violations(graph) == [
        "features.build imports synthetic.world, which it must never import",
        "pipeline.facts (pipeline core) imports features.build (features and synthetic data)",
        "synthetic.world (features and synthetic data) imports rules.score (rules)",
    ]


def test_lazy_and_package_relative_imports_are_seen(tmp_path):
    source = tmp_path / "__init__.py"
    source.write_text("def f():\n    from pipeline import contract\n    from . import deterministic\n"
                      "    import rules.engine\n")
    found = imports_of("pipeline.link", source, {"pipeline.contract", "pipeline.link.deterministic"})
    assert found == {"pipeline.contract", "pipeline.link.deterministic", "rules.engine"}
