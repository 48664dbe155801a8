"""The lock file and ``pyproject.toml`` agree.

``pyproject.toml`` keeps ranges; ``requirements.lock`` (``make lock``: a universal, hashed ``uv pip compile``)
pins what ``make venv``, CI and the book were checked with. For Linux x86-64 and each Python from 3.10 to
3.12, every requirement of the package and of its ``dev`` extras must have exactly one pin in the lock, inside
its range; every pin the lock takes from ``pyproject.toml`` must still be asked for there; every pin carries
hashes (``pip install --require-hashes``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYTHONS = ("3.10", "3.11", "3.12")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*(.+?))?\s*\\?$")


def _environment(python: str) -> dict:
    env = default_environment()
    env.update(python_version=python, python_full_version=f"{python}.0", sys_platform="linux",
               platform_system="Linux", platform_machine="x86_64", os_name="posix",
               implementation_name="cpython", platform_python_implementation="CPython")
    return env


def _pins(text: str) -> list[dict]:
    """Each pin of the lock: name, version, marker (or None), its block of hashes and ``# via`` lines."""
    pins = []
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            name, version, marker = match.groups()
            pins.append({"name": canonicalize_name(name), "version": version, "marker": marker, "block": ""})
        elif pins and line.startswith(" "):
            pins[-1]["block"] += line + "\n"
    return pins


def _requirements(project: dict) -> list[Requirement]:
    """The package's requirements and those of the ``dev`` extra, its self-references expanded."""
    extras = project["optional-dependencies"]
    out, todo, seen = [Requirement(r) for r in project["dependencies"]], ["dev"], set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in map(Requirement, extras[extra]):
            if canonicalize_name(r.name) == canonicalize_name(project["name"]):
                todo += sorted(r.extras)
            else:
                out.append(r)
    return out


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def pins():
    return _pins((ROOT / "requirements.lock").read_text())


def _applies(pin: dict, env: dict) -> bool:
    return pin["marker"] is None or Requirement(f"x; {pin['marker']}").marker.evaluate(env)


@pytest.mark.parametrize("python", PYTHONS)
def test_every_requirement_is_pinned_inside_its_range(project, pins, python):
    env = _environment(python)
    wrong = []
    for req in _requirements(project):
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        found = [p for p in pins if p["name"] == canonicalize_name(req.name) and _applies(p, env)]
        if len(found) != 1:
            wrong.append(f"{req}: {len(found)} pins for Python {python} in requirements.lock")
        elif not req.specifier.contains(found[0]["version"], prereleases=True):
            wrong.append(f"{req}: the lock pins {found[0]['version']} for Python {python}")
    assert not wrong, "requirements.lock is stale; run `make lock`:\n" + "\n".join(wrong)


def test_every_pin_taken_from_pyproject_is_still_asked_for(project, pins):
    asked = {canonicalize_name(r.name) for r in _requirements(project)}
    stale = sorted({p["name"] for p in pins if "flowutils (pyproject.toml)" in p["block"]} - asked)
    assert not stale, f"requirements.lock pins {stale} for pyproject.toml, which no longer asks for them; run `make lock`"


def test_every_pin_has_hashes(pins):
    assert pins and all("--hash=sha256:" in p["block"] for p in pins)


def test_the_helpers_read_what_they_should():
    """The parser and the extras' expansion on a hand-written lock and project."""
    text = ("a==1.0 ; python_full_version < '3.11' \\\n    --hash=sha256:00\n    # via flowutils (pyproject.toml)\n"
            "a==2.0 ; python_full_version >= '3.11' \\\n    --hash=sha256:11\n"
            "b-c==3 \\\n    --hash=sha256:22\n    # via a\n")
    got = _pins(text)
    assert [(p["name"], p["version"]) for p in got] == [("a", "1.0"), ("a", "2.0"), ("b-c", "3")]
    assert [_applies(p, _environment("3.10")) for p in got] == [True, False, True]
    assert "flowutils (pyproject.toml)" in got[0]["block"] and "flowutils" not in got[2]["block"]
    project = {"name": "flowutils", "dependencies": ["a>=1"],
               "optional-dependencies": {"x": ["b_c"], "y": ["d<2"], "dev": ["flowutils[x,y]"]}}
    assert sorted(str(r) for r in _requirements(project)) == ["a>=1", "b_c", "d<2"]
