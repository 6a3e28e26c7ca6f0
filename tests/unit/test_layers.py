"""The layer direction of docs/design.md, checked on the source (import-linter runs it too in CI)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _files(package: str):
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


@pytest.mark.parametrize("path", _files("ratagent"), ids=lambda p: str(p.relative_to(ROOT)))
def test_ratagent_never_imports_the_outer_packages(path):
    bad = {m for m in _imports(path) if m.split(".")[0] in {"training", "plans", "sim_beamline"}}
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", _files("ratagent.crystallography"), ids=lambda p: p.name)
def test_crystallography_imports_nothing_above_it(path):
    ours = {m for m in _imports(path) if m.split(".")[0] == "ratagent"}
    allowed = ("ratagent.crystallography", "ratagent.patterns")
    assert all(m.startswith(allowed) for m in ours), f"{path} imports {ours}"


@pytest.mark.parametrize("path", _files("ratagent.crystallography") + _files("ratagent.simulation"), ids=str)
def test_no_bluesky_below_the_agent(path):
    assert not {m for m in _imports(path) if m.split(".")[0] in {"bluesky", "ophyd", "event_model"}}
