"""The package's layout rules (docs/architecture.md): imports point down the stages, modules and
functions stay short enough to read, and every stage says what it is for."""

import ast
from pathlib import Path

import pytest

from medcyclegan.testing.workflow import ROOT

PACKAGE = ROOT / "medcyclegan"
#: the stages, lowest first: a module may import its own stage and the stages before it
STAGES = ["errors", "privacy", "config", "io", "ingest", "preprocessing", "gan", "inference", "training", "evaluation"]
STAGES += ["figures", "workflow"]
#: beside the stages: the demo data, the benchmarks, the test-data builders and the command line
SIDE = {"demo", "bench", "testing", "__main__"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def package_modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def stage_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_stages(tree: ast.AST):
    """(line, stage) of every import of the package in a module, at any depth (lazy imports too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"line {node.lineno}: relative import; the package uses absolute imports")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "medcyclegan":
            parts = node.module.split(".")
            for name in [parts[1]] if len(parts) > 1 else [a.name for a in node.names]:
                yield node.lineno, name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "medcyclegan" and len(parts) > 1:
                    yield node.lineno, parts[1]


def test_imports_point_down_the_stages():
    rank = {s: i for i, s in enumerate(STAGES)}
    wrong = []
    for path in package_modules():
        stage = stage_of(path)
        if stage == "__init__" or stage in SIDE:
            continue
        for line, target in imported_stages(ast.parse(path.read_text())):
            if target not in rank or rank[target] > rank[stage]:  # a side package, or a stage above
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {stage} imports {target}")
    assert not wrong, "imports must point down the stages:\n" + "\n".join(wrong)


def test_the_demo_data_uses_only_the_writers():
    """demo/ writes raw data in the real layouts; it must not borrow the code that reads them."""
    used = {
        target
        for path in package_modules()
        if stage_of(path) == "demo"
        for _, target in imported_stages(ast.parse(path.read_text()))
    }
    assert used <= {"demo", "io", "errors"}, used


def test_every_module_belongs_to_a_stage_or_the_side():
    assert {stage_of(p) for p in package_modules()} - {"__init__"} <= set(STAGES) | SIDE


@pytest.mark.parametrize("stage", [s for s in STAGES if (PACKAGE / s).is_dir()] + sorted(SIDE - {"__main__"}))
def test_every_stage_says_what_it_is_for(stage):
    assert ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text())), stage


def test_modules_and_functions_stay_short():
    long = []
    for path in package_modules():
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if text.count("\n") > MAX_MODULE_LINES:
            long.append(f"{rel}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_the_test_tree_mirrors_the_package():
    """Tests live under tests/<stage>/ (one folder per stage that has tests), never flat."""
    flat = sorted(p.name for p in (ROOT / "tests").glob("test_*.py") if p.name != Path(__file__).name)
    assert not flat, flat
    for folder in (ROOT / "tests").iterdir():
        if folder.is_dir() and folder.name != "__pycache__":
            assert folder.name in set(STAGES) | SIDE, folder
