"""The layout of conventional/ (installed as stylenas.conventional): imports go downward only,
through the layers of conventional/__init__.py, with no import cycle (module-level and
function-local imports alike), and no module grows past 500 lines."""
import ast
import importlib
import importlib.util
from pathlib import Path

import pytest
import torch

PACKAGE = "stylenas.conventional"
SOURCE = Path(__file__).resolve().parents[1] / "conventional"
MAX_LINES = 500

# commands -> searchers -> (train, rewards, controller, spread) -> networks -> spaces -> (genotypes, ops, ...)
LAYERS = [
    {"genotypes", "ops", "losses", "sources"},  # sources: where each setting comes from (config.json)
    {"spaces"},
    {"networks"},
    {"train", "rewards", "controller", "spread"},
    {"searchers"},
    {"commands", "bench", ""},  # "": the package itself (the public API)
]


def module_names():
    """{dotted name: path} of every module under conventional/ (a package is its __init__.py)."""
    names = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join([PACKAGE, *parts])] = path
    return names


def imported_modules(name, path, known, text=None):
    """Modules of ``known`` that importing ``name`` (at ``path``, or source ``text``) runs: every
    import statement anywhere in the file, resolved like Python does, and every module named in a
    string (``importlib``), plus the packages a deeper module sits in (their __init__ runs first)
    unless they contain ``name`` (already being imported)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, filename=str(path))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:  # `from pkg import sub` imports the submodule pkg.sub
                targets.append(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(PACKAGE + "."):
            # a module named in a string ("pkg.mod" or "pkg.mod:attr") is imported by name later
            targets.append(node.value.split(":")[0])
    found = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in known and prefix != name and not (name + ".").startswith(prefix + "."):
                found.add(prefix)
    return found


def import_graph():
    known = module_names()
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def find_cycle(graph):
    """A list of modules forming an import cycle (the first one repeated at the end), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer(name):
    top = name[len(PACKAGE) + 1:].split(".")[0] if name != PACKAGE else ""
    for rank, members in enumerate(LAYERS):
        if top in members:
            return rank
    raise AssertionError(f"{name}: not in any layer of this test; add it to LAYERS")


def test_the_graph_sees_relative_absolute_and_local_imports():
    graph = import_graph()
    # relative (`from ..genotypes import`), a submodule through `from . import`, and the parent package
    assert f"{PACKAGE}.genotypes" in graph[f"{PACKAGE}.spaces.alphagan_cells"]
    assert f"{PACKAGE}.spaces" in graph[PACKAGE]
    assert f"{PACKAGE}.spaces" in graph[f"{PACKAGE}.networks"]  # importing spaces.x runs spaces/__init__
    # function-local imports (commands imports each searcher when its method is asked for)
    assert f"{PACKAGE}.searchers.dggan" in graph[f"{PACKAGE}.commands"]
    assert f"{PACKAGE}.searchers.differentiable" in graph[f"{PACKAGE}.commands"]
    # a module named in a string, for importlib
    assert imported_modules(f"{PACKAGE}.x", SOURCE / "x.py", {f"{PACKAGE}.train"}, f'import importlib\n'
                            f'importlib.import_module("{PACKAGE}.train")') == {f"{PACKAGE}.train"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_go_downward_through_the_layers():
    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets if layer(b) > layer(a)]
    assert not upward, "imports of a higher layer: " + ", ".join(sorted(upward))


def test_every_import_resolves():
    """Function-local imports run late: a moved module's stale relative import fails only there."""
    missing = []
    for name, path in module_names().items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = importlib.import_module(".".join(base + ([node.module] if node.module else [])))
                missing += [f"{name}:{node.lineno} {module.__name__}.{alias.name}" for alias in node.names
                            if not hasattr(module, alias.name) and not (
                                hasattr(module, "__path__")
                                and importlib.util.find_spec(f"{module.__name__}.{alias.name}") is not None)]
    assert not missing, "unresolved imports: " + ", ".join(missing)


@pytest.mark.parametrize("name", sorted(module_names()))
def test_module_size(name):
    lines = len(module_names()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines (at most {MAX_LINES}); split it by what it holds"


def test_public_api():
    from stylenas.conventional import (PUBLISHED, Discriminator, build_generator, build_networks, count_parameters,
                                       generator_from_checkpoint, load_genotype)
    from stylenas.conventional.genotypes import SPACES

    # the spaces fill the registries the genotype module validates and loads through
    assert list(PUBLISHED) == ["autogan_a", "autogan_b", "autogan_c", "alphagan_l", "alphagan_s"]
    assert list(SPACES) == ["alphagan_conv", "autogan", "degas", "dggan", "agan"]
    assert load_genotype("alphagan_s").search_space == "alphagan_conv"
    G, D = build_networks("autogan_a", resolution=8, gf_dim=4, df_dim=4, latent_dim=4)
    assert isinstance(D, Discriminator) and G(torch.zeros(2, 4)).shape == (2, 3, 8, 8)
    assert count_parameters(build_generator("autogan_a", 8, 4, 4)) == count_parameters(G) > 0
    assert callable(generator_from_checkpoint)
