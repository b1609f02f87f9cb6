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
