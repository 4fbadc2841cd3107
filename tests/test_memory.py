"""The process memory setting the controller applies at start (ingressctl.memory)."""

from __future__ import annotations

import platform

import pytest

from ingressctl.memory import fix_mmap_threshold


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_mmap_threshold_is_fixed_on_glibc() -> None:
    assert fix_mmap_threshold() is True
    assert fix_mmap_threshold() is True, "setting it again is harmless"
