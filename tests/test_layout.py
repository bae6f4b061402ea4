"""The house rules of STYLE.md that a reader would check by hand: modules under about 400
lines, function bodies under about 60 (docstrings not counted), and the layers pointing one
way: nothing in cond/ imports typer or rich, every import (function-level ones included)
points to the same layer or one below it (:data:`RANKS`), and no import cycle exists.

Sizes count *logical* lines (those that end a statement: tokenize's NEWLINE), so that they
do not change when ruff format wraps a call over several lines; before the formatter the
largest module had 257 logical lines in 373 physical ones, hence the 280 below."""

import ast
import glob
import io
import os
import sys
import tokenize

from data import ROOT

SOURCES = sorted(
    glob.glob(os.path.join(ROOT, "cond", "**", "*.py"), recursive=True) + glob.glob(os.path.join(ROOT, "cli", "*.py"))
)
MAX_MODULE_LINES = 280  # logical lines: about 400 physical ones before formatting
MAX_BODY_LINES = 62  # "about 60" (a kernel has one statement a line: logical = physical there)


def _statement_ends(source):
    """The line numbers on which a statement ends (logical lines)."""
    return [t.start[0] for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.NEWLINE]


def _body_lines(node, ends):
    body = node.body
    first = body[0]
    docstring = (
        isinstance(first, ast.Expr)
        and isinstance(getattr(first, "value", None), ast.Constant)
        and isinstance(first.value.value, str)
    )
    start = (body[1].lineno if len(body) > 1 else first.end_lineno + 1) if docstring else first.lineno
    return sum(start <= end <= node.end_lineno for end in ends)


def test_modules_and_functions_stay_small():
    long_modules, long_functions = [], []
    for path in SOURCES:
        source = open(path, encoding="utf-8").read()
        rel = os.path.relpath(path, ROOT)
        ends = _statement_ends(source)
        if len(ends) > MAX_MODULE_LINES:
            long_modules.append((rel, len(ends)))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node, ends) > MAX_BODY_LINES:
                long_functions.append((rel, node.name, _body_lines(node, ends)))
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_cond_never_imports_the_command_line_stack():
    for path in SOURCES:
        if f"{os.sep}cli{os.sep}" in path:
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & {"typer", "rich", "click"}, (path, names & {"typer", "rich", "click"})


# The layers, top to bottom (DESIGN.md): a module may import its own layer or one ranked lower.
# formats may use linalg's numerics (dequantising a stored factor), never the other way round.
RANKS = {
    "cli": 6,
    "__init__": 5,
    "sampling": 5,
    "commands": 4,
    "torch": 3,
    "formats": 2,
    "linalg": 1,
    "kernels": 0,
    "backends": 0,
    "threads": 0,
    "distributed": 0,
    "errors": -1,
    "_version": -1,
}


def import_graph(root):
    """``{module: {modules it imports anywhere in its file}}`` for cond/ and cli/ under ``root``
    (cli/ is installed as cond.cli); ``from pkg import name`` counts as ``pkg.name`` when that
    is a module, else as ``pkg``."""
    files = sorted(
        glob.glob(os.path.join(root, "cond", "**", "*.py"), recursive=True)
        + glob.glob(os.path.join(root, "cli", "*.py"))
    )
    modules = {}
    for path in files:
        name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
        name = "cond." + name if name.startswith("cli") else name
        modules[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path

    def known(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.Import):
                targets |= {known(a.name) for a in node.names if a.name.split(".")[0] == "cond"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("cond"):
                targets |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else known(node.module)
                    for a in node.names
                }
        graph[name] = targets - {name, ""}
    return graph


def layer(module):
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def layer_violations(graph):
    return sorted((m, t) for m, targets in graph.items() for t in targets if RANKS[layer(t)] > RANKS[layer(m)])


def import_cycles(graph):
    """The strongly connected components of more than one module (Tarjan), or a module importing itself."""
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_layers_point_one_way():
    graph = import_graph(ROOT)
    assert set(map(layer, graph)) <= set(RANKS), set(map(layer, graph)) - set(RANKS)
    assert layer_violations(graph) == []


def test_no_import_cycles():
    assert import_cycles(import_graph(ROOT)) == []


def test_the_checks_catch_a_planted_cycle_and_an_upward_import(tmp_path):
    """Two linalg modules importing each other inside functions, and a formats module importing
    a command: both checks must fail on them."""
    for folder in ("cond/linalg", "cond/formats", "cond/commands", "cli"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "cond" / "__init__.py").write_text("")
    (tmp_path / "cond/linalg/one.py").write_text("def f():\n    from cond.linalg.two import g\n    return g\n")
    (tmp_path / "cond/linalg/two.py").write_text("def g():\n    import cond.linalg.one\n    return cond.linalg.one\n")
    (tmp_path / "cond/commands/run.py").write_text("X = 1\n")
    (tmp_path / "cond/formats/reader.py").write_text("def h():\n    from cond.commands import run\n    return run\n")
    graph = import_graph(str(tmp_path))
    assert import_cycles(graph) == [["cond.linalg.one", "cond.linalg.two"]]
    assert layer_violations(graph) == [("cond.formats.reader", "cond.commands.run")]
