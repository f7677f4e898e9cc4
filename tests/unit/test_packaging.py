"""pyproject.toml lists every package, so a built wheel (not only the editable
install the tests use) carries all of threadline and the dev tools."""

from __future__ import annotations

import tomllib

from tests.conftest import REPO_ROOT


def _declared() -> tuple[set[str], dict[str, str]]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    return set(setuptools["packages"]), dict(setuptools["package-dir"])


def _on_disk(package_dirs: dict[str, str]) -> set[str]:
    found = set()
    for top, folder in package_dirs.items():
        root = REPO_ROOT / folder
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found.add(".".join((top, *parts)))
    return found


def test_every_package_on_disk_is_declared():
    declared, package_dirs = _declared()
    assert _on_disk(package_dirs) - declared == set()


def test_every_declared_package_exists():
    declared, package_dirs = _declared()
    assert declared - _on_disk(package_dirs) == set()
