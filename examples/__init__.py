"""Runnable examples of rank_relax_jax (a regular package, so that another distribution's
top-level ``examples`` package, which rax 0.4 installs into site-packages, cannot shadow it)."""
