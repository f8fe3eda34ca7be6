"""The shape of the package: data flows one way, only the config border knows Hydra, the ledger has no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "privtrain"

# Lower layers first. A module may import its own layer or a lower one, never a higher one.
LAYERS = [
    {"errors", "sources", "devices", "distributed", "tracking", "figures", "scores", "crypto"},
    {"privacy"},
    {"data"},
    {"ledger", "models", "training", "policy", "pretrained"},
    {"result"},
    {"artifacts"},
    {"synthetic", "federated", "audit", "runs"},
    {"recipes", "config", "inference", "monitoring"},
    {"api", "cli", "__init__", "__main__"},
]
BORDER = {"config", "api", "cli", "__init__", "__main__"}  # the only code that may know Hydra/OmegaConf


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, anywhere in it (lazy imports inside functions included)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(top: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


MODULES = _modules()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_upward_and_only_the_border_knows_hydra(name):
    if name.startswith("privtrain.federated.app"):
        return  # the Flower App's entry points: thin wrappers, loaded by Flower itself
    top = _top(name)
    assert any(top in layer for layer in LAYERS), f"{name}: add its package to LAYERS"
    for imported in _imports(MODULES[name], name):
        root = imported.split(".")[0]
        if root in ("omegaconf", "hydra"):
            assert top in BORDER, f"{name} imports {imported}: only the config border knows Hydra"
        if root != "privtrain" or imported == "privtrain":
            continue
        other = _top(imported)
        if other == top or not any(other in layer for layer in LAYERS):
            continue
        assert _rank(other) <= _rank(top), f"{name} imports {imported}: an upward import"


def test_the_ledger_package_has_no_import_cycles():
    ledger = {n: p for n, p in MODULES.items() if n.startswith("privtrain.ledger.")}
    graph = {n: {i for i in _imports(p, n) if i in ledger and i != n} for n, p in ledger.items()}
    state: dict[str, int] = {}

    def visit(node, path):
        if state.get(node) == 1:
            raise AssertionError(f"import cycle in the ledger: {' -> '.join(path + [node])}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph[node]:
            visit(nxt, path + [node])
        state[node] = 2

    for node in graph:
        visit(node, [])
    assert graph["privtrain.ledger.run"].isdisjoint({"privtrain.ledger.api", "privtrain.ledger.admission"})


def test_recipes_never_touch_the_ledger_directly():
    """The API builds, reserves and commits every charge; a recipe only describes its mechanisms."""
    for name, path in MODULES.items():
        if name.startswith("privtrain.recipes."):
            text = path.read_text()
            for call in ("ledger.open(", ".charging(", ".commit(", "Charge("):
                assert call not in text, f"{name} calls {call}"


# --- one door to the ledger ----------------------------------------------------------------------------

RUN_PROTOCOL = {"privtrain.api", "privtrain.audit.runner"}  # a recipe's run, and the audit's charged shadows
LEDGER_PRIVATES = {
    "_backend",
    "_conn",
    "_append",
    "_write",
    "_transaction",
    "_anchor",
    "_budget",
    "_state",
    "_composer",
    "_totals",
    "_filter_sum",
    "_spent",
    "_runs",
    "_keys",
    "_prime",
    "_warm",
    "_append_derived",
    "_require_writable",
    "_scope_label",
    "_core",
    "_fail",
    "_finish",
}


def _calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]


def _attribute_reads(path: Path) -> set[str]:
    """Every ``x.name`` in the module where ``x`` is not ``self``."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            out.add(node.attr)
    return out


def test_only_the_run_protocol_charges_or_commits():
    """``charging`` (the one door: charges, policy, reservation) and ``commit`` are called by the run protocol
    only; the lower-level admission (``reserve``/``admitted``) and ``RunRequest`` construction nowhere else."""
    for name, path in MODULES.items():
        methods = {c.func.attr for c in _calls(path) if isinstance(c.func, ast.Attribute)}
        names = {c.func.id for c in _calls(path) if isinstance(c.func, ast.Name)}
        if name not in RUN_PROTOCOL:
            assert "charging" not in methods, f"{name} charges the ledger outside the run protocol"
            if not name.startswith("privtrain.ledger."):
                assert "commit" not in methods or name.startswith("privtrain.tracking"), f"{name} commits a run"
        if name not in {"privtrain.ledger.admission", "privtrain.ledger.api"}:
            assert not {"reserve", "admitted"} & methods, f"{name} reserves charges past the door"
        if name != "privtrain.ledger.model":
            assert "RunRequest" not in names, f"{name} builds a RunRequest by hand: use RunRequest.of"


def test_nothing_reads_the_ledgers_privates():
    """The ledger's state and write primitives have public names (privtrain.ledger.core); no module reads
    another object's private ledger members."""
    for name, path in MODULES.items():
        leaked = _attribute_reads(path) & LEDGER_PRIVATES
        assert not leaked, f"{name} reads the ledger's private members {sorted(leaked)}"


def test_the_plan_is_plain_data():
    """A plan holds values, never callables (it is computed, then read)."""
    import dataclasses

    from privtrain.ledger.model import Plan

    for f in dataclasses.fields(Plan):
        assert "Callable" not in str(f.type), f"Plan.{f.name} holds a callable"
