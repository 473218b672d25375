"""The package's layers (docs/architecture.md): no import circle between its units (a subpackage or a top-level
module of pst_fast), counting every import, deferred ones inside functions included; and the training loop knows
nothing of defenses or metrics."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "pst_fast"

# bottom up: a unit may import only units of lower layers (or its own)
LAYERS = [
    {"errors", "text", "io", "options", "figures", "backend", "kernels", "benchmark", "checkout", "device"},
    {"ops", "models"},
    {"data", "pgd"},
    {"training", "tensorboard"},
    {"defenses", "metrics"},
    {"run"},
    {"attacks"},
    {"sweep", "api", "bench_suite"},
    {"cli", "__main__"},
]


def unit(module: str) -> str:
    """``pst_fast.a.b`` -> ``a`` (``pst_fast`` itself for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "pst_fast"


def imports(path: Path) -> list[tuple[str, int]]:
    """The pst_fast modules imported anywhere in ``path`` (relative imports resolved), with their line numbers."""
    module = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            names = [node.module] if node.module else [a.name for a in node.names]
            found += [(".".join(base + [n]), node.lineno) for n in names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pst_fast"):
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("pst_fast")]
    return found


def graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> ['file:line', ...]; the package root (pst_fast/__init__.py: lazy public names, the
    version) is no unit and is left out on both ends."""
    edges: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PKG.rglob("*.py")):
        src = unit(".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__"))
        if src == "pst_fast":
            continue
        for target, line in imports(path):
            dst = unit(target)
            if dst not in (src, "pst_fast", "__version__"):
                edges.setdefault(src, {}).setdefault(dst, []).append(f"{path.relative_to(PKG.parent)}:{line}")
    return edges


def test_every_unit_has_a_layer():
    units = {unit(".".join(p.relative_to(PKG.parent).with_suffix("").parts)) for p in PKG.rglob("*.py")} - {"pst_fast", "__init__"}
    placed = set().union(*LAYERS)
    assert units <= placed, f"units without a layer in this test and docs/architecture.md: {sorted(units - placed)}"


def test_units_import_only_their_own_or_lower_layers():
    level = {u: i for i, layer in enumerate(LAYERS) for u in layer}
    upward = [f"{src} -> {dst} ({', '.join(where)})" for src, targets in graph().items() for dst, where in targets.items()
              if level[dst] > level[src]]
    assert not upward, upward


def test_no_import_circle_between_units():
    edges = graph()
    circles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in edges.get(node, {}):
            if nxt == path[0]:
                circles.append(" -> ".join(path + [nxt]))
            elif nxt not in path and nxt > path[0]:  # each circle once, from its smallest unit
                visit(nxt, path + [nxt])

    for start in edges:
        visit(start, [start])
    assert not circles, circles


@pytest.mark.parametrize("banned", ["defenses", "metrics", "run", "attacks", "sweep"])
def test_the_training_loop_imports_neither_defenses_nor_metrics(banned):
    assert banned not in {unit(t) for t, _ in imports(PKG / "training" / "loop.py")}
    assert banned not in graph().get("training", {}), graph()["training"].get(banned)
