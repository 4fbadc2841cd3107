"""Shared fixtures: a manifests folder with our IngressClass, and a running controller on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Controller, ingress_class, running_controller, write_manifests
from tests.timing import Lag


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    write_manifests(folder, "class.yaml", [ingress_class()])
    return folder


@pytest.fixture
def lag() -> Iterator[Lag]:
    """Wall-clock limits checked through lag.within(): skipped, saying why, on a loaded machine."""
    with Lag() as probe:
        yield probe


@pytest.fixture
def controller(tmp_path: Path, manifests: Path) -> Iterator[Controller]:
    with running_controller(tmp_path, manifests) as ctl:
        yield ctl
