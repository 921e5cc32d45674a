"""The import graph of the four packages: no cycle (lazy, function-level imports included)
and dependencies one way: theory ← simulations, theory ← odeflow ← figures.

Every ``.py`` under theory/, odeflow/, simulations/ and figures/ is parsed with ``ast``;
every ``import``/``from … import`` anywhere in it (module level, inside functions, inside
``if``/``try``) is an edge to the project module it names (``from pkg import name`` is an
edge to ``pkg.name`` when that is a module, else to ``pkg``)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "odeflow", "simulations", "figures")
#: what each package may import from the others
ALLOWED = {
    "theory": set(),
    "simulations": {"theory"},
    "odeflow": {"theory", "simulations"},
    "figures": {"theory", "simulations", "odeflow"},
}


def _modules():
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            rel = f.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            mods[".".join(parts)] = (f, is_pkg)
    return mods


def _edges(mods):
    edges = {}
    for name, (f, is_pkg) in mods.items():
        tree = ast.parse(f.read_text(), filename=str(f))
        pkg = name if is_pkg else name.rpartition(".")[0]
        out = set()

        def add(target, name=name, out=out):
            # the longest prefix of target that is a project module
            parts = target.split(".")
            for i in range(len(parts), 0, -1):
                cand = ".".join(parts[:i])
                if cand in mods:
                    if cand != name:
                        out.add(cand)
                    return

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    add(a.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    full = f"{target}.{a.name}"
                    add(full if full in mods else target)
        edges[name] = out
    return edges


def _cycle(edges, skip):
    """One cycle of the graph without the edges in ``skip`` (a list of modules), or None."""
    state, stack = {}, []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(edges.get(u, ())):
            if (u, v) in skip:
                continue
            if state.get(v) == 1:
                return stack[stack.index(v) :] + [v]
            if v not in state:
                c = visit(v)
                if c:
                    return c
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(edges):
        if u not in state:
            c = visit(u)
            if c:
                return c
    return None


def test_the_parser_sees_lazy_imports():
    edges = _edges(_modules())
    # odeflow.api imports odeflow.events inside solve() only, and theory.models imports
    # theory.codegen inside a function only (sympy is slow to import)
    assert "odeflow.events" in edges["odeflow.api"]
    assert "theory.codegen" in edges["theory.models"]


def test_no_import_cycle():
    edges = _edges(_modules())
    cycle = _cycle(edges, set())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_in_theory_at_all():
    edges = _edges(_modules())
    theory = {
        u: {v for v in vs if v.startswith("theory")}
        for u, vs in edges.items()
        if u.startswith("theory")
    }
    cycle = _cycle(theory, set())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_package_direction():
    edges = _edges(_modules())
    bad = sorted(
        (u, v)
        for u, vs in edges.items()
        for v in vs
        if v.split(".")[0] != u.split(".")[0] and v.split(".")[0] not in ALLOWED[u.split(".")[0]]
    )
    assert not bad, "imports against the package direction: " + ", ".join(
        f"{u} -> {v}" for u, v in bad
    )
