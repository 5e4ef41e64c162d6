"""The package's shape: no import cycle among stablesam's modules, imports inside functions
included (the graph is read from the source, nothing is imported)."""

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "stablesam"


def module_files(root: Path = PACKAGE) -> Dict[str, Path]:
    """Dotted module name -> file, for every module and package of stablesam."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(root: Path = PACKAGE) -> Dict[str, Set[str]]:
    """module -> the stablesam modules it imports anywhere in its file (top level, functions,
    `if TYPE_CHECKING` blocks): `from .x import name` counts as importing `x.name` when that is
    a module, else `x`. Importing a submodule does not count its parent packages."""
    files = module_files(root)
    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    deps.add(full if full in files else target)
        graph[module] = {d for d in deps if d in files and d != module}
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "stablesam"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import f\nimport stablesam.sub\n")
    graph = import_graph(pkg)
    assert graph["stablesam.a"] == {"stablesam.sub.b"}
    assert graph["stablesam.sub.b"] == {"stablesam.a", "stablesam.sub"}
    assert cycles(graph) == [["stablesam.a", "stablesam.sub.b"]]


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_test_module_imports_another():
    """Shared test code lives in conftest.py and helpers.py, never in a test module."""
    tests = Path(__file__).resolve().parent
    found = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{path.name} imports {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert not found, found


# Layers, top to bottom: a module imports only from its own layer or below. The model layers:
# models (SPECs, files, loading, the embedding cache) over backends (one subpackage per SAM
# family: adapter, predictor, automatic masks) over modeling (the plugins, and the family
# interface and registry they wrap a model through).
LAYERS = {
    "cli": 5, "__main__": 5, "commands": 5, "demo": 5, "label_studio": 5,
    "annotate": 5, "integrations": 5, "napari": 5, "reproduce": 5,
    "training": 4, "export": 4,  # both use evaluation's metrics and simulated clicks
    "evaluation": 3,
    "models": 2.3, "backends": 2.2, "modeling": 2.1,
    "data": 1, "prompts": 1, "fileio": 1, "limits": 1, "precision": 1,
}


def test_imports_point_down_the_layers():
    upward = []
    for module, deps in import_graph().items():
        if module == "stablesam":  # the public API gathers from every layer
            continue
        for dep in deps - {"stablesam"}:  # `from .. import __version__`
            if LAYERS[dep.split(".")[1]] > LAYERS[module.split(".")[1]]:
                upward.append(f"{module} -> {dep}")
    assert not upward, upward
    assert set(LAYERS) >= {m.split(".")[1] for m in module_files() if m != "stablesam"}


def test_each_family_is_one_subpackage():
    """backends/ holds one subpackage per registered family and only the modules all families
    share; no family module imports another family's."""
    from stablesam.backends import families

    backends = PACKAGE / "backends"
    subpackages = {p.parent.name for p in backends.glob("*/__init__.py")}
    assert subpackages == {b.family for b in families()}
    assert {p.stem for p in backends.glob("*.py")} == {"__init__", "predictor", "automatic", "official"}
    crossing = [f"{m} -> {d}" for m, deps in import_graph().items() if m.startswith("stablesam.backends.")
                for d in deps if d.startswith("stablesam.backends.") and len(m.split(".")) > 3
                and len(d.split(".")) > 3 and m.split(".")[2] != d.split(".")[2]]
    assert not crossing, crossing
