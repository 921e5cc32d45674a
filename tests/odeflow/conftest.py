"""Shared fixtures for the odeflow tests: the linear toy system (always available) and the
real generated systems (skipped until ``theory.codegen`` exists)."""

import importlib.util
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # for ``import toy_system``

from toy_system import ToySystem, stable_A, toy_state  # noqa: E402

HAVE_CODEGEN = importlib.util.find_spec("theory.codegen") is not None
needs_theory = pytest.mark.skipif(not HAVE_CODEGEN, reason="theory.codegen not available")


@pytest.fixture(scope="session")
def toy():
    return ToySystem(stable_A())


@pytest.fixture(scope="session")
def toy_init():
    return toy_state()


def afa_state(K=2, M=2, seed=0, N=1000, sigma_F=0.3):
    """A measured AFA initial state as in docs/theory.md §7 (w, w* ~ N(0, I), v ~ 0.1 N(0,1))."""
    from theory.state import OrderParameters

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(K, N))
    ws = rng.normal(size=(M, N))
    F = sigma_F * rng.normal(size=N)
    return OrderParameters.from_weights(w, ws, 0.1 * rng.normal(size=K), np.ones(M), F=F)


@pytest.fixture(scope="session")
def real_state():
    return afa_state()
