"""Test configuration: a strict, deterministic environment for the whole suite.

* Unit tests run with 64-bit types enabled (gradient checks need float64); every test that
  checks float32/bfloat16 behaviour asks for that dtype explicitly.
* Doctests run in JAX's default 32-bit mode, so docstring examples show what users see.
* Implicit rank promotion raises (a silent broadcast is usually a bug in batched code).
* Hypothesis is derandomized and has no deadline (JIT compilation makes timings meaningless).
"""

import jax
import pytest
from _pytest.doctest import DoctestItem
from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, deadline=None, max_examples=25)
settings.load_profile("deterministic")


@pytest.fixture(autouse=True)
def _jax_config(request):
    x64 = not isinstance(request.node, DoctestItem)
    with jax.enable_x64(x64), jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drops JAX's compilation caches after each test module.

    The suite compiles thousands of small programs; keeping every executable alive for the whole
    session grows the process's memory maps until XLA's CPU JIT fails (seen as a segfault inside
    ``backend_compile_and_load`` late in a full run, never in a module run alone).
    """
    yield
    jax.clear_caches()
