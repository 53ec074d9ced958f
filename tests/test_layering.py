"""The code reads as floors: a module imports only from its own floor or the floors below it; a backend imports
only the backend SDK and the floors under it; the conformance suite adds only public compile/run entry points."""

import ast

from conftest import ROOT

CORE = ROOT / "core" / "hetagent"

# floor of each top-level part of the core; a part may import parts of the same or a lower floor
FLOORS = {
    "errors": 0, "files": 0, "dtypes": 0, "graphs": 0,
    "ir": 1,
    "agent": 2, "models": 2, "hardware": 2,  # agent: the front-ends (Python tracing, LangGraph import)
    "plan": 2,  # the one Plan/Placement and its schemas: read by planner, compiler, simulator, runtime, server
    "backend": 3,
    "cost": 4,
    "planner": 5, "sim": 5,
    "compiler": 6,
    "runtime": 7,
    "serve": 8,
    "cli": 9, "__main__": 9,
}
# what a backend package may import of hetagent (spec/plugin-api.md, section 8)
BACKEND_MAY_IMPORT = ("backend", "models", "hardware", "ir", "errors")
# the conformance suite drives compile and run end to end through their public entry points
CONFORMANCE_MAY_IMPORT = BACKEND_MAY_IMPORT + ("plan", "compiler", "runtime")


def _part(path):
    rel = path.relative_to(CORE)
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else None


def imports(path):
    """(line, module, names) of every import of `path`, `importlib.import_module("literal")` included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value, []))
    return found


def test_no_floor_imports_a_higher_one():
    violations = []
    for path in CORE.rglob("*.py"):
        part = _part(path)
        if part is None:
            continue
        assert part in FLOORS, f"{path}: new top-level part {part!r}: give it a floor in tests/test_layering.py"
        for line, name, _ in imports(path):
            bits = name.split(".")
            if bits[0] == "hetagent" and len(bits) > 1 and bits[1] in FLOORS and FLOORS[bits[1]] > FLOORS[part]:
                violations.append(f"{path.relative_to(ROOT)}:{line} ({part}) imports {name}")
    assert not violations, "\n".join(violations)


def _outside_violations(root, allowed: tuple[str, ...]) -> list[str]:
    violations = []
    for path in root.rglob("*.py"):
        for line, name, names in imports(path):
            bits = name.split(".")
            if bits[0] != "hetagent":
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            if len(bits) < 2 or bits[1] not in allowed:
                violations.append(f"{where}: may import only hetagent.{{{','.join(allowed)}}}")
            elif any(b.startswith("_") for b in bits[2:]) or any(n.startswith("_") for n in names):
                violations.append(f"{where} {names}: a private name")
    return violations


def test_backends_import_only_the_backend_sdk():
    violations = []
    for backend in sorted((ROOT / "plugins").iterdir()):
        violations += _outside_violations(backend, BACKEND_MAY_IMPORT)
    assert not violations, "\n".join(violations)


def test_conformance_uses_only_public_compile_and_run_entry_points():
    violations = _outside_violations(ROOT / "conformance", CONFORMANCE_MAY_IMPORT)
    assert not violations, "\n".join(violations)


def _backend_literals(tree, ids: set[str], ambiguous: set[str]) -> list[tuple[int, str]]:
    """Backend ids written as literals. An id that is also another concept's word (`cpu` is a device kind,
    `cuda` an IREE HAL driver) counts only where it stands for a backend: a `backend=` argument, a comparison or
    assignment involving a name with "backend" in it, or `Registry.load([...])`."""
    found = []

    def mentions_backend(node) -> bool:
        return "backend" in ast.unparse(node).lower()

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in ids - ambiguous:
            found.append((node.lineno, node.value))
        contexts = []
        if isinstance(node, ast.keyword) and node.arg and "backend" in node.arg:
            contexts.append(node.value)
        elif isinstance(node, ast.Compare) and mentions_backend(node):
            contexts.append(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and any(
                mentions_backend(t) for t in getattr(node, "targets", [getattr(node, "target", None)])):
            contexts.append(node.value)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("Registry.load"):
            contexts += node.args
        for context in contexts:
            found += [(c.lineno, c.value) for c in ast.walk(context)
                      if isinstance(c, ast.Constant) and c.value in ambiguous & ids]
    return found


def test_the_core_names_no_backend():
    """No backend id as a literal in the core: the host device and the reference backend come from the records
    backends return."""
    from hetagent.backend.iree import DRIVERS
    from hetagent.hardware.device import DEVICE_KINDS

    ids = {p.name.removeprefix("hetagent-") for p in (ROOT / "plugins").iterdir()}
    found = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        found += [f"{path.relative_to(ROOT)}:{line}: {value!r}"
                  for line, value in _backend_literals(tree, ids, set(DEVICE_KINDS) | set(DRIVERS))]
    assert not found, "\n".join(sorted(set(found)))


def test_the_backend_literal_check_catches_what_it_should():
    ids, ambiguous = {"cpu", "cuda"}, {"cpu", "cuda"}
    caught = _backend_literals(ast.parse('REFERENCE_BACKEND = "cpu"\nif p.backend == "cuda": pass\n'
                                         'Registry.load(["cpu"])\nf(backend="cpu")'), ids, ambiguous)
    assert [line for line, _ in caught] == [1, 2, 3, 4]
    assert not _backend_literals(ast.parse('KINDS = ("gpu", "cpu")\nif profile.kind == "cpu": pass'), ids, ambiguous)


def _module_name(path) -> str:
    return ".".join(path.relative_to(CORE.parent).with_suffix("").parts).removesuffix(".__init__")


def test_no_import_cycles():
    """No two modules of the core import each other, directly or round a loop, counting imports inside functions
    (a lazy import that closes a loop hides a design problem rather than solving it)."""
    modules = {_module_name(path): path for path in CORE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for _, imported, names in imports(path):
            submodules = {f"{imported}.{n}" for n in names} & modules.keys()  # `from package import module`
            targets |= submodules or ({imported} & modules.keys())
        graph[name] = targets - {name}
    cycles, state = [], {}

    def visit(node, stack):  # depth-first; a back edge to a node on the stack closes a cycle
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_two_modules_of_the_core_share_a_name():
    """One name per concept: a module's file name says what it is wherever it is imported from."""
    seen: dict[str, list[str]] = {}
    for path in CORE.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.name, []).append(str(path.relative_to(CORE)))
    shared = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not shared, shared
