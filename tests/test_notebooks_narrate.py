"""Notebooks narrate and plot: the computation lives in resonance_utils, where it is tested and cached. A notebook
that defines a function, a class or a lambda has grown logic of its own; this fails it, naming the cell."""
import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_defines_no_functions_or_classes(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    found = []
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]  # IPython magics
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                found.append(f"code cell {i}, line {node.lineno}: {type(node).__name__}")
    assert not found, f"{path.name} defines code that belongs in resonance_utils: {found}"


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 10
