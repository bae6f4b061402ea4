"""The house rules of STYLE.md that a reader would check by hand: modules under about 400
lines, function bodies under about 60 (docstrings not counted), and the layers pointing one
way (nothing in cond/ imports typer or rich)."""

import ast
import glob
import os

from data import ROOT

SOURCES = sorted(glob.glob(os.path.join(ROOT, "cond", "**", "*.py"), recursive=True)
                 + glob.glob(os.path.join(ROOT, "cli", "*.py")))
MAX_MODULE_LINES = 400
MAX_BODY_LINES = 62  # "about 60"


def _body_lines(node):
    body = node.body
    first = body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
        and isinstance(first.value.value, str)
    start = (body[1].lineno if len(body) > 1 else first.end_lineno + 1) if docstring else first.lineno
    return node.end_lineno - start + 1


def test_modules_and_functions_stay_small():
    long_modules, long_functions = [], []
    for path in SOURCES:
        source = open(path, encoding="utf-8").read()
        rel = os.path.relpath(path, ROOT)
        if source.count("\n") > MAX_MODULE_LINES:
            long_modules.append((rel, source.count("\n")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_BODY_LINES:
                long_functions.append((rel, node.name, _body_lines(node)))
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
