"""The package's shape: imports run one way, from the ground floor up, with no circle and no function-local import
of posekit's own modules outside the command line (which defers them for start-up time).

Floors, lowest first (a module may import its own floor and the floors below):
  0  errors, config, skeletons, structures, fileio, weightfiles        plain values and files
  1  codecs, models, losses, data, viz, the package facade              the parts the papers describe
  2  build, runtime                                                    Config -> objects; device and processes
  3  evaluation                                                        predict a split, decode, score
  4  training                                                          the loop, checkpoints, optimiser
  5  deploy                                                            ONNX, backends, conversion, bench
  6  apps                                                              predictor, tracking, video, demo
  7  cli, __main__                                                     parsing and dispatch
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "posekit"

FLOORS: Dict[str, int] = {
    "errors": 0, "config": 0, "skeletons": 0, "structures": 0, "fileio": 0, "weightfiles": 0,
    "codecs": 1, "models": 1, "losses": 1, "data": 1, "viz": 1, "": 1,
    "build": 2, "runtime": 2,
    "evaluation": 3,
    "training": 4,
    "deploy": 5,
    "apps": 6,
    "cli": 7, "__main__": 7,
}
# Deferred imports of posekit's own modules are allowed only here: the command line imports each command's
# machinery when that command runs, and the package facade imports the predictor (OpenCV, the data pipeline)
# only when it is asked for.
DEFERRED_OK = {"posekit.cli", "posekit"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> List[str]:
    """The posekit modules an import statement reads (a name imported from a package may be a submodule)."""
    if node.level == 0:
        base = node.module or ""
        if base != "posekit" and not base.startswith("posekit."):
            return []
    else:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    modules = all_modules()
    found = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        found.append(candidate if candidate in modules else base)
    return found


def floor_of(module: str) -> int:
    parts = module.split(".")
    return FLOORS[parts[1] if len(parts) > 1 else ""]


def imports_of(path: Path) -> List[Tuple[str, int, bool]]:
    """(imported posekit module, line, at module level?) for every import in the file."""
    module = module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    for node in tree.body:     # imports under `if TYPE_CHECKING:` / try at module level count as module level
        if isinstance(node, (ast.If, ast.Try)):
            top_level.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            targets = resolve(node, module, path.name == "__init__.py")
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name == "posekit" or a.name.startswith("posekit.")]
        else:
            continue
        found += [(t, node.lineno, id(node) in top_level) for t in targets]
    return found


def type_checking_only(path: Path) -> Set[int]:
    """Lines of imports under ``if TYPE_CHECKING:`` (annotations only: never executed)."""
    tree = ast.parse(path.read_text())
    lines: Set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines.update(n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return lines


def graph() -> Dict[str, Set[str]]:
    """Module -> the posekit modules it imports at run time (module level, TYPE_CHECKING excluded)."""
    edges: Dict[str, Set[str]] = {}
    for name, path in all_modules().items():
        hidden = type_checking_only(path)
        edges[name] = {t for t, line, top in imports_of(path) if top and t != name and line not in hidden}
    return edges


def find_cycle(edges: Dict[str, Set[str]]) -> Optional[List[str]]:
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_every_module_has_a_floor():
    missing = sorted(m for m in all_modules() if (m.split(".") + [""])[1] not in FLOORS)
    assert not missing, f"modules outside the floor plan (add them to FLOORS): {missing}"


def test_no_import_climbs_to_a_higher_floor():
    upward = []
    for name, path in all_modules().items():
        hidden = type_checking_only(path)
        for target, line, _ in imports_of(path):
            if line not in hidden and floor_of(target) > floor_of(name) and name != "posekit":
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} "
                              f"(floor {floor_of(target)} > {floor_of(name)})")
    assert not upward, "imports that climb back up:\n" + "\n".join(upward)


def test_no_import_circle():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_own_modules_are_imported_at_module_level():
    deferred = []
    for name, path in all_modules().items():
        if name in DEFERRED_OK:
            continue
        deferred += [f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} inside a function"
                     for target, line, top in imports_of(path) if not top]
    assert not deferred, "function-local imports of posekit modules:\n" + "\n".join(deferred)


def test_the_checks_see_a_circle_and_a_climb():
    # The walker itself: a made-up graph with a circle is caught, and the floors order as documented.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert floor_of("posekit.apps.predictor") > floor_of("posekit.deploy.backends") > floor_of("posekit.training.trainer")
    assert floor_of("posekit.evaluation.evaluate") > floor_of("posekit.build") > floor_of("posekit.data.dataset")


@pytest.mark.parametrize("module", ["posekit.apps.predictor", "posekit.training.trainer", "posekit.deploy.bench"])
def test_real_imports_are_seen(module):
    # The predictor reads the evaluation's decoding, the trainer the build step: the walker must find both.
    targets = {t for t, _, _ in imports_of(all_modules()[module])}
    expected = {"posekit.apps.predictor": "posekit.evaluation.inference", "posekit.training.trainer": "posekit.build",
                "posekit.deploy.bench": "posekit.deploy.backends"}[module]
    assert expected in targets
