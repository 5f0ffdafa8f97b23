"""Guards shared by every test: float64 is only ever switched on locally.

Tests that need float64 use ``with jax.enable_x64(True):``. Switching x64 on globally
(``jax.config.update("jax_enable_x64", True)`` or ``JAX_ENABLE_X64=1``) would silently
change the dtypes every other test sees, so it fails the test that did it (and is switched
back off), or the whole session if it was on from the start.
"""

from __future__ import annotations

import jax
import pytest


def pytest_sessionstart(session):
    if jax.config.jax_enable_x64:
        raise pytest.UsageError("JAX x64 is on globally (JAX_ENABLE_X64?); tests switch it on locally only")


@pytest.fixture(autouse=True)
def _x64_stays_local():
    yield
    if jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", False)  # so that only the culprit fails
        pytest.fail("this test switched JAX x64 on globally; use `with jax.enable_x64(True):` instead")
