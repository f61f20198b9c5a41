"""The package layout is the flowchart: each layer imports only lower layers' public names.

docs/layout.md describes the layers; this test reads every module's imports (statically, with
``ast``) and fails on an import from the same or a higher layer in another package, on an
import of another package's submodule (its private parts), and on an import cycle.
"""

import ast
from pathlib import Path

import pytest

import fusionrec

ROOT = Path(fusionrec.__file__).parent
LAYERS = {
    "_allocator": 0,
    "_choices": 0,
    "_parallel": 0,
    "_pickling": 0,
    "_storage": 0,
    "_vectors": 0,
    "images": 1,
    "_validation": 2,
    "evaluation": 2,
    "datasets": 2,
    "traditional": 3,
    "deep": 3,
    "features": 4,
    "fusion": 5,
    "search": 6,
    "files": 7,
    "explanations": 7,
    "serve": 8,
    "extraction": 8,
    "cli": 9,
    "__main__": 10,
}
"""Layer of each top-level package or module of fusionrec (docs/layout.md)."""


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported_modules(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of each ``fusionrec`` import in the module, made absolute."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    imports = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            imports.append((module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            imports.extend((alias.name, []) for alias in node.names)
    return [(module, names) for module, names in imports if module.split(".")[0] == "fusionrec"]


def top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_has_a_layer():
    tops = {top(name) for name in modules()} - {None}
    assert tops <= set(LAYERS), f"give these a layer in LAYERS: {sorted(tops - set(LAYERS))}"


def violations() -> list[str]:
    found = []
    known = modules()
    for name, path in known.items():
        source = top(name)
        for module, names in imported_modules(name, path):
            target = top(module)
            if source is None or target is None or target == source:
                continue
            if LAYERS[target] >= LAYERS[source]:
                found.append(f"{name} imports {module} (layer {LAYERS[target]} >= {source}'s)")
            submodule = f"fusionrec.{target}"
            is_package = (ROOT / target / "__init__.py").exists()
            imports_submodule = module != submodule and is_package
            importing_a_submodule_by_name = module == submodule and any(
                f"{submodule}.{item}" in known for item in names
            )
            if imports_submodule or importing_a_submodule_by_name:
                found.append(f"{name} imports {module} {names}: not {submodule}'s public names")
    return found


def test_each_layer_imports_only_lower_layers_public_names():
    assert violations() == []


def test_the_import_graph_has_no_cycle():
    known = modules()
    graph = {name: set() for name in known}
    for name, path in known.items():
        for module, names in imported_modules(name, path):
            submodules = {f"{module}.{item}" for item in names} & set(known)
            graph[name] |= submodules or ({module} & set(known))
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for neighbour in graph[node]:
            if state.get(neighbour) == "open":
                cycle = [*trail[trail.index(neighbour) :], neighbour] if neighbour in trail else []
                pytest.fail(f"import cycle: {' -> '.join(cycle or [node, neighbour])}")
            if neighbour not in state:
                visit(neighbour, [*trail, neighbour])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
