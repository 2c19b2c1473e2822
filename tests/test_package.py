"""The package's shape: the public names it promises, and the layers its modules keep to.

Layers, bottom to top: runtime (where kernels run, Numba extensions) -> lessons (the chapters'
library code) -> perf (timing, figures, sweeps) -> course (command line, exercises, grading).
A module imports only from its own layer or below, never in a circle, and never a name that
another module keeps private.
"""

import ast
from pathlib import Path

import pytest

import tutorial

PACKAGE = Path(tutorial.__file__).parent
PROMISED = ["QTensor", "absmax", "absmax_rows", "absmax_blocks", "warp_max", "block_max",  # 01
            "quantize_per_tensor", "calibrate", "quantize_per_channel",  # 02-03
            "quantize_blockwise", "quantize_groups_interleaved", "split_interleaved",  # 04
            "scaled_matmul", "matmul_float32"]  # 05
LAYERS = ["runtime", "lessons", "perf", "course"]


def test_every_promised_name_is_exported_and_callable():
    missing = [name for name in PROMISED if name not in tutorial.__all__ or not hasattr(tutorial, name)]
    assert missing == []
    assert all(callable(getattr(tutorial, name)) for name in PROMISED)
    assert set(tutorial.__all__) <= set(dir(tutorial))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str | None:
    """The layer of a module of the package; None for the package's own facade."""
    if module in ("tutorial", "tutorial.__main__"):
        return None
    part = module.split(".")[1]
    if part in ("runtime", "version"):
        return "runtime"
    return part if part in ("perf", "course") else "lessons"


def imports(path: Path):
    """(imported module, names taken from it, line) of every import in a module, lazy ones too,
    made absolute; plus ("attribute", module alias, name) for `alias._name` uses."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / target.replace(".", "/")).with_suffix(".py").exists() or \
                    (PACKAGE.parent / target.replace(".", "/") / "__init__.py").exists()
                if is_module:
                    aliases[alias.asname or alias.name] = target
                    yield target, [], node.lineno
                else:
                    yield base, [alias.name], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name
                yield alias.name, [], node.lineno
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and aliases[node.value.id].startswith("tutorial")):
            yield ("attribute", aliases[node.value.id], node.attr), [], node.lineno


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_imports_point_down_the_layers():
    wrong = []
    for path in SOURCES:
        here = layer(module_name(path))
        for target, _, line in imports(path):
            if isinstance(target, tuple) or not target.startswith("tutorial") or here is None:
                continue
            there = layer(target)
            if there is not None and LAYERS.index(there) > LAYERS.index(here):
                wrong.append(f"{module_name(path)}:{line} ({here}) imports {target} ({there})")
    assert wrong == []


def test_no_module_uses_another_modules_private_names():
    wrong = []
    for path in SOURCES:
        for target, names, line in imports(path):
            if isinstance(target, tuple):
                wrong.append(f"{module_name(path)}:{line} uses {target[1]}.{target[2]}")
            elif target.startswith("tutorial"):
                wrong += [f"{module_name(path)}:{line} imports {target}.{n}" for n in names
                          if n.startswith("_") and not n.startswith("__")]
    assert wrong == []


def test_modules_import_each_other_in_no_circle():
    graph = {module_name(p): {t for t, _, _ in imports(p) if isinstance(t, str) and t.startswith("tutorial.")}
             for p in SOURCES}
    graph = {m: {t for t in targets if t in graph and t != m and not m.startswith(t + ".")}
             for m, targets in graph.items()}  # a module's own package is imported before it anyway

    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return trail + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
        return None

    cycles = [c for c in map(cycle_from, graph) if c]
    assert cycles == [], " -> ".join(cycles[0])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_modules_are_lesson_sized(path):
    assert len(path.read_text().splitlines()) <= 500
