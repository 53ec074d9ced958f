"""The core reads as floors: a module imports only from its own floor or the floors below it."""

import ast

from conftest import ROOT

CORE = ROOT / "core" / "hetagent"

# floor of each top-level part of the core; a part may import parts of the same or a lower floor
FLOORS = {
    "errors": 0, "files": 0, "dtypes": 0, "graphs": 0,
    "ir": 1,
    "models": 2, "hardware": 2,
    "plugins": 3,
    "cost": 4,
    "planner": 5, "sim": 5,
    "compiler": 6,
    "runtime": 7,
    "serve": 8,
    "cli": 9, "__main__": 9,
}


def _part(path):
    rel = path.relative_to(CORE)
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else None


def test_no_floor_imports_a_higher_one():
    violations = []
    for path in CORE.rglob("*.py"):
        part = _part(path)
        if part is None:
            continue
        assert part in FLOORS, f"{path}: new top-level part {part!r}: give it a floor in tests/test_layering.py"
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                bits = name.split(".")
                if bits[0] == "hetagent" and len(bits) > 1 and bits[1] in FLOORS and FLOORS[bits[1]] > FLOORS[part]:
                    violations.append(f"{path.relative_to(ROOT)}:{node.lineno} ({part}) imports {name}")
    assert not violations, "\n".join(violations)
