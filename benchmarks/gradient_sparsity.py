"""How often the isotonic relaxations give an exactly zero gradient (docs/methods.md).

For lists of standard-normal scores, prints the share of lists whose whole Jacobian is zero
and the share of entries that get no gradient, per op, list length and temperature. Usage::

    python benchmarks/gradient_sparsity.py [--out benchmarks/results/gradient_sparsity.json]
    python -m benchmarks.gradient_sparsity

With ``--out`` it also writes the rows in the layout of ``benchmarks/_meta.py``.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

try:  # python -m benchmarks.gradient_sparsity
    from benchmarks import _meta
except ImportError:  # python benchmarks/gradient_sparsity.py
    import _meta

import rank_relax_jax as rrj

TEMPERATURES = (0.01, 0.1, 0.3, 1.0, 3.0)
LENGTHS = (5, 20, 100)
LISTS = 200


def _ops(n):
    k = 2 if n == 5 else 5
    return {
        "`soft_rank` isotonic L2": lambda v, t: rrj.soft_rank(v, temperature=t),
        "`soft_rank` isotonic KL": lambda v, t: rrj.soft_rank(
            v, temperature=t, regularization="kl"
        ),
        "`soft_topk_mask` isotonic L2": lambda v, t: rrj.soft_topk_mask(v, k, temperature=t),
        "`soft_topk_mask` isotonic KL": lambda v, t: rrj.soft_topk_mask(
            v, k, temperature=t, regularization="kl"
        ),
        "`soft_rank` sigmoid": lambda v, t: rrj.soft_rank(v, method="sigmoid", temperature=t),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    head = " | ".join(f"τ = {t:g}" for t in TEMPERATURES)
    print(f"| op | n | {head} |")
    print("|---" * (len(TEMPERATURES) + 2) + "|")
    for name in _ops(5):
        for n in LENGTHS:
            x = jax.random.normal(jax.random.key(n), (LISTS, n))
            op = _ops(n)[name]
            cells = []
            for t in TEMPERATURES:
                jac = jax.jit(jax.vmap(jax.jacrev(lambda v, t=t, op=op: op(v, t))))(x)
                entry_zero = np.all(np.asarray(jac) == 0, axis=1)  # entry j moves no output
                list_zero = np.all(entry_zero, axis=-1)
                cells.append(f"{list_zero.mean():.0%} / {entry_zero.mean():.0%}")
                rows.append(
                    {
                        "op": name.replace("`", ""),
                        "n": n,
                        "temperature": t,
                        "zero_list_share": float(list_zero.mean()),
                        "zero_entry_share": float(entry_zero.mean()),
                    }
                )
            print(f"| {name} | {n} | " + " | ".join(cells) + " |", flush=True)
    if args.out:
        _meta.write(args.out, rows, lists=LISTS, scores="standard normal")


if __name__ == "__main__":
    main()
