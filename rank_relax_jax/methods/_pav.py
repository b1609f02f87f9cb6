"""Pool-Adjacent-Violators (PAV) solver of the isotonic method, with O(n) derivatives.

Blondel, Teboul, Berthet & Djolonga, "Fast Differentiable Sorting and Ranking", ICML 2020
(`rank_relax_jax.methods.isotonic` holds the operators built on it). Nothing here calls back to
the host:

* **PAV without an O(n) sequential loop.** The L2 solution is the slope sequence of the least
  concave majorant of the cumulative sums of ``s - w``; the KL solution is the same construction
  on the points ``(Σ exp(w), Σ exp(s))`` (a weighted L2 problem in disguise), carried out in log
  space. Every row is padded to a multiple of 32 entries (a power of two below) and cut into
  chunks of 32; a stack machine (PAV proper, ``2·32 - 2`` steps) solves all chunks of all rows at
  once. The chunks are then merged pairwise, ``ceil(log2(n / 32))`` levels (a row's last
  segment may be short), about 256 pairs of a level at once (`_lanes_per_row` pairs of every
  row): merging two solved segments pools one suffix of the left one's blocks with one prefix
  of the right one's (the bridge of the two concave majorants, Preparata-Hong style), found by
  nested 4-ary searches on block boundaries that read block values and suffix/prefix
  statistics of the segments, kept up to date in O(n) per level (L2 stores sums only: counts
  follow from positions). Padding (masked entries and the tail of the last chunk) is
  excluded from pooling by an explicit liveness mask in every comparison, never by a sentinel
  value, so it cannot pool with valid entries after rounding in any dtype. Adjacent blocks whose
  values agree up to rounding pool (one comparison, `_pools`, in the stack machine and in a
  sweep after each merge), so every gap between blocks exceeds the rounding of the searches'
  pooled values and their predicates stay monotone as computed. Work O(n log n), sequential
  depth O(32 + log³ n / 4).
* **Row-local where it matters, flat where it is faster.** With several devices the rows are
  solved by one ``vmap`` of a one-row solver (`_pav_row`), and the block sums of the
  derivatives are vmapped scatters (`_segment_sum`): every index is a position in its row, so
  the gathers and scatters carry the batch as a batch dimension and XLA's SPMD partitioner
  keeps a batch sharded over devices where it is. (Flattening the batch into one array with
  global offsets made it all-gather the batch.) The one collective left is the all-reduce of
  one boolean per iteration of the tie sweep (the ``while_loop`` of `_bridges`). With one
  device, or inside a ``jax.shard_map`` over the whole mesh, nothing can be sharded, and the
  same solver runs on the rows laid end to end (the flat layout, `_flat_default`): XLA:CPU's
  one-index gathers make it 1.2-1.5x faster than the batched ones at many-row shapes, and the
  tie sweep's loop test is then local to each device. Both layouts give the same bits.
* **Compile time independent of n.** The levels run in one ``fori_loop`` with the level traced
  (`_merge_levels`), and the searches are ``fori_loop``s, so the compiled program holds one
  copy of each loop body whatever ``n``: about 1-1.5 s of XLA:CPU compile time per op and shape,
  where one unrolled copy per level took 3-20 s (docs/performance.md).
* **O(n) derivatives.** The Jacobian of PAV is block-constant: block means for L2, block softmax
  weights for KL (Blondel et al., Sec. 4). `proj_l2` and `proj_kl` carry a
  ``jax.custom_jvp`` whose tangent is one scatter-add and one gather over the blocks; JAX
  transposes it for reverse mode, so the derivatives build no ``n × n`` matrix.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from rank_relax_jax._sharding import fully_manual, vary_like

# Digits per step of the bridge searches: a 2**_BITS-ary search needs ceil(L / _BITS) steps on a
# segment of length 2**L, each evaluating 2**_BITS candidates per side in parallel.
_BITS = 2
# Length of the chunks that the sequential stack machine solves before the hull merges (32 and
# 16 measured within noise at (1, 100000); 32 is faster for many short rows).
_CHUNK = 32

# ----------------------------------------------------------------------------------------------
# Block statistics. L2 pools (sum, count) and a block's value is sum / count; KL pools
# (logsumexp(s), logsumexp(w)) and a block's value is their difference.


def _logaddexp(a, b):
    # The solver's inputs are finite (log 0 is a large finite negative), so the guards of
    # jnp.logaddexp for infinities are not needed; this form is several times cheaper on CPU.
    return jnp.maximum(a, b) + jnp.log1p(jnp.exp(-jnp.abs(a - b)))


def _cum_logsumexp(a, reverse):
    """Cumulative logsumexp along the last axis of a ``[G, C]`` array, by a scan over ``C``.

    (``lax.cumlogsumexp`` lowers to a reduce-window that is about 20x slower on CPU.)
    """

    def step(carry, col):
        carry = _logaddexp(carry, col)
        return carry, carry

    cols = jnp.swapaxes(a, 0, 1)
    init = vary_like(jnp.full(cols.shape[1:], jnp.finfo(a.dtype).min / 4, a.dtype), a)
    _, out = jax.lax.scan(step, init, cols, reverse=reverse)
    return jnp.swapaxes(out, 0, 1)


def _combine(kind, a, b):
    if kind == "l2":
        return (a[0] + b[0], a[1] + b[1])
    return (_logaddexp(a[0], b[0]), _logaddexp(a[1], b[1]))


def _value(kind, st):
    if kind == "l2":
        return st[0] / st[1]
    return st[0] - st[1]


# Adjacent blocks whose values differ by at most this many ``eps * scale`` pool as ties
# (`_pools`; `_bridges` says why the solver needs it). Measured on lists of exact ties (KL
# sort, float64, 16000 lists): 0.25 still let 13 lists through wrong, 0.5 none; 4 already
# pools blocks that differ by a few ulps for real and changes their (block-constant) gradient.
_TIE_EPS = 1.0


def _tie_tol(kind, a, b):
    """Largest excess of a block's value over its right neighbour's that counts as a tie.

    ``_TIE_EPS`` units of rounding of the quantities the two values are computed from: the
    values themselves for L2 (means), the log-sums whose difference is the value for KL.
    Zero where a value is not finite, so infinities compare as before.
    """
    if kind == "l2":
        scale = jnp.maximum(jnp.abs(_value(kind, a)), jnp.abs(_value(kind, b)))
    else:
        scale = jnp.maximum(jnp.abs(a[0]) + jnp.abs(a[1]), jnp.abs(b[0]) + jnp.abs(b[1]))
    tol = (_TIE_EPS * jnp.finfo(scale.dtype).eps) * scale
    return jnp.where(scale < jnp.inf, tol, jnp.zeros((), scale.dtype))


def _pools(kind, a, b):
    """Whether block ``a`` and the block ``b`` right after it pool: ``a`` is not above ``b``.

    Values equal up to rounding (a tie, `_tie_tol`) pool too. Every pooling decision of the
    solver (stack machine, merge test, tie sweep) is this one comparison.
    """
    return _value(kind, a) <= _value(kind, b) + _tie_tol(kind, a, b)


def _take(arrays, idx):
    return tuple(jnp.take(a, idx, mode="clip") for a in arrays)


def _last_true(pred, nbits, prefix_shape, limit):
    """Largest offset in ``[0, min(2**nbits, limit))`` where a monotone predicate holds.

    ``pred(offsets)`` maps an int32 array of shape ``prefix_shape + (K,)`` to ``(ok, payload)``:
    booleans that must be true at offset 0 and true-then-false along the offsets, and a pytree
    of arrays of that shape. A ``2**_BITS``-ary digit search in a ``fori_loop`` whose bounds
    may be traced (one compiled body whatever ``nbits``); at least one step, so the payload is
    always the one computed at the returned offset (offset 0 is a candidate of the first step).
    ``limit`` is an int or an int array that broadcasts against ``prefix_shape + (K,)``.

    Returns:
      ``(offset, payload)``, both of shape ``prefix_shape``.
    """
    steps = jnp.maximum((nbits + _BITS - 1) // _BITS, 1)
    lanes = jnp.arange(1 << _BITS, dtype=jnp.int32)
    # One traced call gives the payload's types; its values are unused (XLA drops them), and
    # inside shard_map the carry must vary like them (`vary_like`).
    ok0, pay0 = pred(jnp.zeros(prefix_shape + lanes.shape, jnp.int32))
    payload = jax.tree.map(lambda s: jnp.zeros(s.shape[:-1], s.dtype), pay0)
    init = vary_like((jnp.zeros(prefix_shape, jnp.int32), payload), ok0, pay0)

    def body(step, carry):
        off, _ = carry
        weight = jnp.left_shift(1, _BITS * (steps - 1 - step)).astype(jnp.int32)
        cand = off[..., None] + (lanes * weight).reshape((1,) * off.ndim + lanes.shape)
        ok, pay = pred(jnp.minimum(cand, limit - 1))
        ok = ok & (cand < limit)
        # The last true candidate (lane 0, the current offset, is true by induction).
        last = jnp.max(jnp.where(ok, lanes, 0), axis=-1)
        pay = jax.tree.map(lambda a: jnp.take_along_axis(a, last[..., None], axis=-1)[..., 0], pay)
        return off + last * weight, pay

    return jax.lax.fori_loop(0, steps, body, init)


def _chunk_pav(kind, elem, live, chunk):
    """Sequential PAV on ``[G, chunk]`` rows, vectorized over the ``G`` rows.

    A stack machine: each of ``2 * chunk - 1`` steps (the first, always a push, before the
    loop) either pools the two top blocks of a row's stack (when they violate the order or tie,
    `_pools`) or pushes the row's next entry.
    Entries where ``live`` is False (padding, a suffix of every row) stay singletons and never
    pool: the decision is made on ``live``, not on a sentinel value, so it holds in every dtype.
    The top block lives in the loop's carry, not in the stack arrays, so a step reads one block
    of the stack and writes at most one (blocks span ``[start, next start)``, so L2 keeps only
    the sums: a block's count follows from the starts, exactly).

    ``elem`` holds the stored statistics of the ``[G, chunk]`` entries (L2: the sums alone;
    KL: both log-sums) and ``live`` their liveness.

    Returns:
      ``(start, end, block)``: per entry, the local start and end (exclusive) of its block and
      the block's pooled stored statistics.
    """
    g = elem[0].shape[0]
    rows = jnp.arange(g)
    dtype = elem[0].dtype

    nlive = jnp.sum(live, axis=1, dtype=jnp.int32)  # live entries are a prefix of each row

    def full(st, count):
        return st if kind == "kl" else (st[0], count.astype(dtype))

    def body(_, carry):
        stack, sstart, depth, top, tstart, tlive, nxt = carry
        # ``depth`` blocks lie below the top block [tstart, nxt).
        below = jnp.maximum(depth - 1, 0)
        a_start = sstart[rows, below]
        a = full(tuple(st[rows, below] for st in stack), tstart - a_start)
        t = full(top, nxt - tstart)
        pool = (depth >= 1) & tlive & _pools(kind, a, t)
        push = ~pool & (nxt < chunk)
        pooled = _combine(kind, a, t)[: len(elem)]
        # A push moves the top block onto the stack; other steps write to the spare slot
        # ``chunk - 1`` (at most ``chunk - 1`` blocks lie below the top one).
        slot = jnp.where(push, depth, chunk - 1)
        stack = tuple(st.at[rows, slot].set(x) for st, x in zip(stack, top, strict=True))
        sstart = sstart.at[rows, slot].set(tstart)
        at = jnp.minimum(nxt, chunk - 1)
        e = tuple(x[rows, at] for x in elem)
        top = tuple(
            jnp.where(pool, p, jnp.where(push, x, y))
            for p, x, y in zip(pooled, e, top, strict=True)
        )
        tstart = jnp.where(pool, a_start, jnp.where(push, nxt, tstart))
        tlive = jnp.where(push, at < nlive, tlive)
        one = jnp.ones((), jnp.int32)
        depth = depth - jnp.where(pool, one, 0) + jnp.where(push, one, 0)
        return stack, sstart, depth, top, tstart, tlive, nxt + jnp.where(push, one, 0)

    init = (
        tuple(jnp.zeros_like(x) for x in elem),
        jnp.zeros((g, chunk), jnp.int32),
        jnp.zeros((g,), jnp.int32),
        tuple(x[:, 0] for x in elem),  # the first step always pushes entry 0
        jnp.zeros((g,), jnp.int32),
        live[:, 0],
        jnp.ones((g,), jnp.int32),
    )
    init = vary_like(init, elem, live)
    stack, sstart, top, last, lstart, _, _ = jax.lax.fori_loop(0, 2 * chunk - 2, body, init)
    stack = tuple(st.at[rows, top].set(x) for st, x in zip(stack, last, strict=True))
    sstart = sstart.at[rows, top].set(lstart)
    slots = jnp.arange(chunk, dtype=jnp.int32)
    live = slots[None, :] <= top[:, None]
    marks = jnp.zeros((g, chunk + 1), jnp.int32)
    marks = marks.at[rows[:, None], jnp.where(live, sstart, chunk)].set(1)[:, :chunk]
    index = jnp.cumsum(marks, axis=-1, dtype=jnp.int32) - 1
    block = tuple(jnp.take_along_axis(s, index, axis=-1) for s in stack)
    start = jnp.take_along_axis(sstart, index, axis=-1)
    after = jnp.minimum(index + 1, chunk - 1)
    end = jnp.where(index + 1 <= top[:, None], jnp.take_along_axis(sstart, after, axis=-1), chunk)
    return start, end, block


def _stat(kind, arrays, idx, count):
    """Statistics at ``idx``: L2 keeps only sums (counts follow from positions), KL both lses."""
    if kind == "l2":
        return (jnp.take(arrays[0], idx, mode="clip"), count.astype(arrays[0].dtype))
    return _take(arrays, idx)


def _bridges(kind, level, q, start, end, block, suf, pre, live, val, row_len):
    """``(merge, p, qe, pooled)``: how the pairs ``q`` (``[lanes]`` int32) of ``level`` merge.

    The arrays hold rows of ``row_len`` laid end to end (one row under `pav`'s ``vmap``). Pair
    ``q`` is pair ``k`` of row ``r`` (``q = r · ceil(row_len / 2h) + k``, ``h = 2**level``,
    ``level`` may be traced): the solved segments A = ``[k·2h, k·2h + h)`` and
    B = ``[k·2h + h, (k+1)·2h)`` of that row, each cut at the row's end (B may be short or
    empty; then there is nothing to merge). They merge by pooling one
    suffix of A's blocks with one prefix of B's blocks, the bridge of their concave majorants;
    nothing changes (``merge`` False) when the last block of A already lies above the first
    block of B. The pool is ``[p, qe)`` with statistics ``pooled``. For L2 the arrays hold sums
    only: a block's count is ``end - start`` and a suffix's or prefix's count follows from its
    position in the segment.

    The pool's right end comes first, from B's block values alone: at a threshold ``t`` take
    every block of A whose value is at most ``t`` and every block of B whose value is at least
    ``t``; the pool's residual at ``t`` (L2: its sum minus ``t`` times its count; KL: the same
    with ``exp``) decreases in ``t`` and vanishes at the bridge's value ``v``, so a block of B
    pools (``t = `` its value ``>= v``) exactly when ``t`` is at least the value of that
    threshold pool. A search over B's blocks evaluates this, with an inner search for A's
    threshold entry that compares one block value per candidate (``val``, each entry's block
    value, computed once per level). Then a search over A's block starts (the tangent from the
    right end) gives the left end. Their predicates compare a block
    value with the value of a candidate pool. Those predicates are monotone because the block
    values of a solved segment decrease strictly, but the pools' values come from suffix and
    prefix sums, rounded differently from the blocks' own. Where two adjacent blocks differ by
    less than that rounding (exact ties in the data make such near-equal blocks), a predicate
    can read false between trues, and the search then skips the true answer and pools blocks
    that are clearly in order (issue 16: a KL soft sort 10 off, for one list of ties). So the
    solver keeps every adjacent pair of blocks apart by more than rounding: blocks that tie
    pool (`_pools`, also in the stack machine), and after the searches a sweep pools the new
    block with a neighbour it ties with until none does. With every gap above the rounding of
    the pools' values, the predicates are monotone as computed.

    ``live`` (flat bool) is False on padding, a suffix of every row. Padding is treated as a
    wall of value ``-inf`` that nothing pools into: B does not merge when it starts with
    padding, and a pool never reaches past the last live entry. Its statistics are finite
    but never compared, so no sentinel value has to stay below the data after rounding.
    """
    h = jnp.left_shift(1, level).astype(jnp.int32)
    lanes = q.shape[0]
    # Pair q is pair k of its row; the row's last segment may be short (or, for A, alone).
    row, k = jnp.divmod(q, _row_pairs(row_len, level))
    row_start = row * row_len
    row_end = row_start + row_len
    start_a = row_start + k * (2 * h)
    start_b = jnp.minimum(start_a + h, row_end)
    end_b = jnp.minimum(start_a + 2 * h, row_end)

    def block_at(g):
        return _stat(kind, block, g, _take_i(end, g) - _take_i(start, g))

    merge = (
        (start_b < row_end)
        & _take_i(live, start_b)
        & _pools(kind, block_at(start_b - 1), block_at(start_b))
    )

    def tangent(qe, pooled_b):
        # For each candidate right end ``qe`` of the pool, its left end: the last block start
        # ``p`` in A whose left neighbour stays above the value of the pool [p, qe).
        sa = start_a.reshape((lanes,) + (1,) * qe.ndim)
        sb = sa + h

        def pred(off):
            p = _take_i(start, sa + off)
            pooled = _combine(
                kind, _stat(kind, suf, p, sb - p), tuple(b[..., None] for b in pooled_b)
            )
            left = _take_i(val, p - 1)
            return (p <= sa) | (left > _value(kind, pooled)), ()

        off, _ = _last_true(pred, level, qe.shape, h)
        p = _take_i(start, sa[..., 0] + off)
        return p, _combine(kind, _stat(kind, suf, p, sb[..., 0] - p), pooled_b)

    def a_split(t):
        # First entry of A whose block value is at most ``t`` (a block start; sb if none).
        sa = start_a.reshape((lanes,) + (1,) * t.ndim)

        def pred(off):
            return (off == 0) | (_take_i(val, sa + off - 1) > t[..., None]), ()

        off, _ = _last_true(pred, level, t.shape, h)
        p = sa[..., 0] + off
        return jnp.where(_take_i(val, p) > t, p + 1, p)

    def pools_b(off):
        # Whether B's block at offset ``off`` pools: its value t is at least the value of the
        # pool of every block of A and B on the right side of t (A's blocks at most t, B's
        # blocks up to this one). The pool's residual sum at t decreases in t, and its zero
        # is the bridge's value, so this is true on a prefix of B's blocks, false after.
        g = start_b[:, None] + off
        t = _take_i(val, g)
        qe = _take_i(end, g)
        sb = start_b[:, None]
        p = a_split(t)
        # No block of A at most t (p == sb): the pool is B's blocks alone.
        part_a = _where(p < sb, _stat(kind, suf, p, sb - p), _empty(kind, t.dtype))
        pooled = _combine(kind, part_a, _stat(kind, pre, qe - 1, qe - sb))
        # Padding (a suffix of B) never pools.
        return _take_i(live, g) & (t >= _value(kind, pooled)), ()

    off, _ = _last_true(pools_b, level, (lanes,), (end_b - start_b)[:, None])
    qe = _take_i(end, start_b + off)
    p, pooled = tangent(qe, _stat(kind, pre, qe - 1, qe - start_b))

    def sweep(carry):
        # Pools the new block [p, qe) with a neighbour it ties with (A's blocks left of p and
        # B's right of qe are unchanged); one step per iteration, usually none.
        p, qe, pooled, _ = carry
        left, right = block_at(p - 1), block_at(qe)
        go_left = merge & (p > start_a) & _pools(kind, left, pooled)
        go_right = merge & (qe < end_b) & _take_i(live, qe) & _pools(kind, pooled, right)
        pooled = _where(go_left, _combine(kind, left, pooled), pooled)
        pooled = _where(go_right, _combine(kind, pooled, right), pooled)
        p = jnp.where(go_left, _take_i(start, p - 1), p)
        qe = jnp.where(go_right, _take_i(end, qe), qe)
        return p, qe, pooled, go_left | go_right

    p, qe, pooled, _ = jax.lax.while_loop(
        lambda carry: jnp.any(carry[3]), sweep, (p, qe, pooled, merge)
    )
    return merge, p, qe, pooled


# Pairs whose bridges one iteration of `_merge_levels` searches at once (a power of two): wide
# enough to vectorize, narrow enough that the top levels (few pairs) waste little work.
# (4096, one block at every benchmarked shape, compiles 0.25 s faster but runs 1.7x slower at
# (1, 100000).) Packing start/end and the statistics as the columns of one array (one gather
# per block read) saved 0.2 s of compile but made the solver 2.7x slower at (128, 100), KL.
_LANES = 256


# Where the top levels of the merges have few pairs (one long row, or a few), a lane block is
# one pair per ``2**_LANE_SHIFT`` entries, at least ``_MIN_LANES`` pairs: `_merge_levels`.
_LANE_SHIFT = 10
# Narrower blocks mean more lane-loop iterations at the bottom levels, and below about 16 pairs
# an iteration's fixed cost outweighs the clipped copies of the last pair that a wider block
# searches: 16 against 4 was 11-21% faster with KL at (1, 1000), (1, 10000) and (4, 1000),
# within noise with L2 (`benchmarks/ab_solver.py`, 2026-12-06); 64 against 16 within noise.
_MIN_LANES = 16


def _merge_levels(kind, base_level, levels, start, end, block, suf, pre, live, lanes, row_len):
    """Merge levels ``base_level .. levels - 1`` of rows laid end to end, in one loop.

    Level ``L`` merges every adjacent pair of solved segments of length ``2**L`` of a row (the
    row's last segment may be shorter, `_bridges`).
    The level is traced, so one compiled level body serves every level and every row length:
    one unrolled copy per level cost about 1.5 s of XLA compile time each. A level searches
    its ``ceil(row_len / 2**(L + 1))`` pairs per row ``lanes`` at a time (a loop over lane
    blocks), then updates the entries, the suffix (left halves) and prefix (right halves)
    statistics by gathering each entry's pair results.

    The lane count is one trade: a block wider than a level's pairs searches clipped copies of
    its last pair (wasted work at the top levels, where few pairs are left and the searches are
    deepest), a narrower one runs more loop iterations at the bottom levels. Where the last
    level still has a quarter of ``lanes`` pairs (a batch of many rows) the waste is small and
    the blocks stay ``lanes`` wide; otherwise they hold one pair per 1,024 entries, at least
    ``_MIN_LANES`` (16).
    Measured against the unrolled levels (`benchmarks/bench_isotonic.py`, docs/performance.md):
    one width of 256 for every level was up to 2.5x slower (KL at (1, 10000)); a second, narrow
    loop for the top levels matched the unrolled speed but cost 0.6 s more compile time (about
    2 s in all for KL); this rule matches it within a few percent with one loop body.
    """
    total = start.shape[0]
    rows = total // row_len
    max_pairs = rows * -(-row_len // (2 << base_level))
    wide = min(lanes, max_pairs)
    if 4 * rows < wide:  # the last level has one pair per row
        wide = max(min(wide, total >> _LANE_SHIFT), min(_MIN_LANES, wide))
    state = (start, end, block, suf, pre)
    return _level_loop(kind, base_level, levels, state, live, wide, row_len)


def _level_loop(kind, first, stop, state, live, lanes, row_len):
    """Levels ``first .. stop - 1`` (static bounds) in one loop of ``lanes``-wide blocks."""
    if stop <= first:
        return state
    start = state[0]
    total = start.shape[0]
    rows = total // row_len
    max_pairs = rows * -(-row_len // (2 << first))
    # Room for whole lane blocks (``max_pairs`` need not be a multiple of ``lanes``).
    room = -(-max_pairs // lanes) * lanes
    g = jnp.arange(total, dtype=jnp.int32)
    # Rows of a power of two: every segment is whole, and the positions in the flat array give
    # the pairs directly (the same values, with fewer operations per entry and level).
    whole = row_len & (row_len - 1) == 0
    if not whole:
        g_row, g_local = jnp.divmod(g, row_len)  # each entry's row and position in it
    stored = 1 if kind == "l2" else 2
    dtype = state[2][0].dtype

    def level_body(level, state):
        start, end, block, suf, pre = state
        # Each entry's block value, read by the searches with one gather.
        val = _value(kind, block if kind == "kl" else (block[0], (end - start).astype(dtype)))
        row_pairs = _row_pairs(row_len, level)
        pairs = rows * row_pairs

        def lane_block(i, acc):
            q = jnp.minimum(i * lanes + jnp.arange(lanes, dtype=jnp.int32), pairs - 1)
            merge, p, qe, pooled = _bridges(
                kind, level, q, start, end, block, suf, pre, live, val, row_len
            )
            out = (merge, p, qe, *pooled[:stored])
            return tuple(
                jax.lax.dynamic_update_slice(a, o, (i * lanes,))
                for a, o in zip(acc, out, strict=True)
            )

        acc = (
            jnp.zeros((room,), bool),
            jnp.zeros((room,), jnp.int32),
            jnp.zeros((room,), jnp.int32),
            *(jnp.zeros((room,), dtype) for _ in range(stored)),
        )
        acc = vary_like(acc, start, block, live)
        if room == lanes:  # one lane block: no loop
            merge, p, qe, *pooled = lane_block(0, acc)
        else:
            nblocks = (pairs + lanes - 1) // lanes
            merge, p, qe, *pooled = jax.lax.fori_loop(0, nblocks, lane_block, acc)
        if whole:
            pair = jnp.right_shift(g, level + 1)
        else:
            pair = g_row * row_pairs + jnp.right_shift(g_local, level + 1)
        p_g, qe_g = jnp.take(p, pair), jnp.take(qe, pair)
        sel = jnp.take(merge, pair) & (g >= p_g) & (g < qe_g)
        start = jnp.where(sel, p_g, start)
        end = jnp.where(sel, qe_g, end)
        block = tuple(
            jnp.where(sel, jnp.take(c, pair), a) for a, c in zip(block, pooled, strict=True)
        )
        # Suffix statistics of A now run to the end of B (B's total is its first suffix
        # entry); prefix statistics of B start at A's start (A's total is its last prefix).
        # A left half with no right half (a row's short last segment) keeps its statistics.
        if whole:
            left = (g & jnp.left_shift(1, level)) == 0
            b0 = jnp.left_shift(jnp.right_shift(g, level) | 1, level)
        else:
            left = (g_local & jnp.left_shift(1, level)) == 0
            b0_local = jnp.left_shift(jnp.right_shift(g_local, level) | 1, level)
            alone = b0_local >= row_len
            b0 = g_row * row_len + b0_local
            empty = _empty(kind, dtype)[0]
        # One combine per entry (each entry updates one of the two), not one per array.
        new_suf, new_pre = [], []
        for s_arr, p_arr in zip(suf, pre, strict=True):
            after = jnp.take(s_arr, b0) if whole else jnp.where(alone, empty, _take_i(s_arr, b0))
            other = jnp.where(left, after, jnp.take(p_arr, b0 - 1))
            new = _combine1(kind, jnp.where(left, s_arr, p_arr), other)
            new_suf.append(jnp.where(left, new, s_arr))
            new_pre.append(jnp.where(left, p_arr, new))
        suf, pre = tuple(new_suf), tuple(new_pre)
        return start, end, block, suf, pre

    return jax.lax.fori_loop(first, stop, level_body, state)


def _row_pairs(row_len, level):
    """Pairs of segments of ``2**level`` entries in a row of ``row_len``: ``ceil(row_len / 2h)``."""
    return jnp.right_shift(row_len - 1, level + 1).astype(jnp.int32) + 1


def _take_i(a, idx):
    return jnp.take(a, idx, mode="clip")


def _empty(kind, dtype):
    """Statistics of an empty pool: the identity of `_combine`."""
    if kind == "l2":
        return (jnp.zeros((), dtype), jnp.zeros((), dtype))
    low = jnp.asarray(jnp.finfo(dtype).min / 4, dtype)
    return (low, low)


def _where(cond, a, b):
    return tuple(jnp.where(cond, x, y) for x, y in zip(a, b, strict=True))


def _combine1(kind, a, b):
    return (a + b) if kind == "l2" else _logaddexp(a, b)


def _pav_row(kind, st, live, chunk, lanes, row_len=None):
    """`pav` of one row: ``st`` (statistics) and ``live`` are ``[N]`` (`_padded_len`).

    Every index is a position in the row, so under `pav`'s ``vmap`` each gather and scatter
    carries the batch as a batch dimension and a batch sharded over devices stays on them.

    With ``row_len`` (a multiple of the chunk dividing ``N``), the ``[N]`` arrays are
    ``N / row_len`` rows laid end to end and solved at once: the merges stop at each row, so no
    block crosses a row, and every index is a position in the flat array (`pav`'s flat path).
    """
    big_n = live.shape[0]
    row_len = big_n if row_len is None else row_len
    levels = max(row_len - 1, 0).bit_length()  # the top segment covers the row
    chunk = min(chunk, row_len)
    base_level = chunk.bit_length() - 1
    groups = big_n // chunk
    # L2 keeps only the sums (counts follow from positions).
    elem = tuple(a.reshape(groups, chunk) for a in (st[:1] if kind == "l2" else st))
    start, end, block = _chunk_pav(kind, elem, live.reshape(groups, chunk), chunk)
    offset = (jnp.arange(groups, dtype=jnp.int32) * chunk)[:, None]
    start = (start + offset).reshape(big_n)
    end = (end + offset).reshape(big_n)
    block = tuple(a.reshape(big_n) for a in block)
    if kind == "l2":
        pre = tuple(jax.lax.cumsum(a, axis=1).reshape(big_n) for a in elem)
        suf = tuple(jax.lax.cumsum(a, axis=1, reverse=True).reshape(big_n) for a in elem)
    else:
        pre = tuple(_cum_logsumexp(a, reverse=False).reshape(big_n) for a in elem)
        suf = tuple(_cum_logsumexp(a, reverse=True).reshape(big_n) for a in elem)

    if levels > base_level:
        start, end, block, suf, pre = _merge_levels(
            kind, base_level, levels, start, end, block, suf, pre, live, lanes, row_len
        )
    return start, end, block


def _lanes_per_row(rows):
    """Pairs per row that one lane block of `_merge_levels` searches: about ``_LANES`` in all.

    A power of two, at least 1. (A fixed count per row would search the same pair many times
    over at the top levels of many-row batches, where each row has one pair left.)
    """
    per_row = max(_LANES // max(rows, 1), 1)
    return 1 << (per_row.bit_length() - 1)


def _flat_default(x) -> bool:
    """Whether the solver runs on the batch flattened into one array (`pav`'s ``flat``).

    Only where nothing can be sharded: there is one device, or ``x`` is inside a
    ``jax.shard_map`` over every axis of its mesh (each device runs its own rows). XLA:CPU runs
    the flat array's one-index gathers and scatters faster than the row-local ones, whose batch
    dimension each gather carries as a second index (1.2-1.5x on many-row batches,
    `benchmarks/bench_isotonic.py`). Elsewhere with several devices a batch may be sharded, and
    the global offsets of the flat array would make XLA's SPMD partitioner all-gather it.
    """
    return jax.device_count() == 1 or fully_manual(x)


# Jitted (with the static options) so that eager calls reuse one compilation instead of
# re-tracing the loops; under an outer jit it is inlined.
@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def pav(kind, stats, valid, chunk=None, flat=None):
    """Exact decreasing isotonic regression of every row: PAV on chunks, then hull merges.

    Two layouts of the same computation (every pooling decision and every rounding is the same,
    so the results are equal bit for bit; `tests/test_isotonic.py`):

    * row-local: one ``vmap`` of the one-row solver (`_pav_row`). No index crosses rows, so
      XLA's SPMD partitioner keeps a batch sharded over devices where it is (a solver on the
      batch flattened into one array, with global offsets, made it all-gather the batch).
    * flat: the rows laid end to end in one array and solved by the same solver, with the
      merges stopped at the row length (`_flat_default`: where there is a single device, or
      inside a ``shard_map`` over the whole mesh).

    Args:
      kind: ``"l2"`` (stats ``(y, 1)``) or ``"kl"`` (stats ``(s, w)``).
      stats: Pair of ``[R, n]`` arrays of per-element statistics.
      valid: ``[R, n]`` boolean, True on a prefix of each row (padding sorted last), or None.
      chunk: Length of the chunks solved by the sequential stack machine (a power of two).
      flat: The flat layout (True) or the row-local one (False); None: `_flat_default`.

    Returns:
      ``(start, end, block)``: ``[R, n]`` int32 positions in the row of the first entry of the
      block holding each entry and of the entry after its last, and the pooled statistics of
      that block (``(sum, count)`` for L2, ``(logsumexp(s), logsumexp(w))`` for KL).
    """
    r, n = stats[0].shape
    chunk = _CHUNK if chunk is None else chunk
    big_n = _padded_len(n, chunk)
    dtype = stats[0].dtype
    # Padding (masked entries and the power-of-two tail) is marked by ``live`` and excluded from
    # pooling by the solver's comparisons themselves. (A sentinel value below the data is not
    # enough: padding entries tie with each other, and with KL's log-space weights a rounding
    # error that pools one of them into a valid block moves its value by O(1) -- issue 16.)
    # Their statistics only need to be finite: value 0, unit weight.
    if valid is None:
        valid = jnp.ones((r, n), bool)
    pad = (jnp.zeros((), dtype), jnp.ones((), dtype) if kind == "l2" else jnp.zeros((), dtype))
    st = tuple(jnp.where(valid, a, p) for a, p in zip(stats, pad, strict=True))
    live = valid
    if big_n > n:
        st = tuple(
            jnp.concatenate([a, jnp.broadcast_to(p, (r, big_n - n))], axis=-1)
            for a, p in zip(st, pad, strict=True)
        )
        live = jnp.concatenate([live, jnp.zeros((r, big_n - n), bool)], axis=-1)
    if _flat_default(stats[0]) if flat is None else flat:
        total = r * big_n
        start, end, block = _pav_row(
            kind,
            tuple(a.reshape(total) for a in st),
            live.reshape(total),
            chunk=chunk,
            lanes=_LANES,
            row_len=big_n,
        )
        first = (jnp.arange(r, dtype=jnp.int32) * big_n)[:, None]
        start = start.reshape(r, big_n) - first
        end = end.reshape(r, big_n) - first
        block = tuple(a.reshape(r, big_n) for a in block)
    else:
        solve = functools.partial(_pav_row, kind, chunk=chunk, lanes=_lanes_per_row(r))
        start, end, block = jax.vmap(solve)(st, live)
    start, end = start[:, :n], end[:, :n]
    block = tuple(a[:, :n] for a in block)
    if kind == "l2":
        block = (block[0], (end - start).astype(dtype))
    return start, end, block


def _padded_len(n, chunk):
    """Row length of the solver: ``n`` rounded up to a power of two, or a multiple of ``chunk``.

    Up to ``chunk``, a power of two (one chunk); beyond, a multiple of ``chunk``: a row's last
    merge segment may then be short (`_bridges`).
    """
    if n <= chunk:
        return 1 << (math.ceil(math.log2(n)) if n > 1 else 0)
    return -(-n // chunk) * chunk


def _flat_index(idx):
    """``[R, n]`` positions in their rows as positions in the flattened ``[R * n]`` array."""
    r, n = idx.shape
    return (idx + (jnp.arange(r, dtype=idx.dtype) * n)[:, None]).reshape(r * n)


def _row_take(values, idx):
    """``values[r, idx[r, i]]`` per row (``idx`` within ``[0, n)``).

    A gather with the batch as a batch dimension (a sharded batch stays on its devices), or
    with one device (`_flat_default`) one gather from the flattened array, faster on CPU.
    """
    if _flat_default(values):
        return jnp.take(values.reshape(-1), _flat_index(idx), mode="clip").reshape(values.shape)
    return jax.vmap(lambda v, i: jnp.take(v, i, mode="clip"))(values, idx)


def _segment_sum(values, start):
    """Sums ``values`` over blocks (``start``: position of the block's first entry) per row.

    One scatter-add and one gather per row, vmapped so that they carry the batch as a batch
    dimension (a sharded batch stays on its devices); with one device (`_flat_default`), one
    scatter-add and one gather on the flattened array.
    """
    if _flat_default(values):
        flat = _flat_index(start)
        sums = jnp.zeros((values.size,), values.dtype).at[flat].add(values.reshape(-1))
        return jnp.take(sums, flat, mode="clip").reshape(values.shape)

    def one(v, st):
        return jnp.take(jnp.zeros_like(v).at[st].add(v), st, mode="clip")

    return jax.vmap(one)(values, start)


def rowwise(fn):
    """Runs a ``[R, n]`` kernel on ``[..., n]`` arrays."""

    @functools.wraps(fn)
    def wrapped(*arrays):
        shape = arrays[0].shape
        if arrays[0].size == 0:  # an empty batch or empty rows: nothing to solve
            return jnp.zeros(shape, arrays[0].dtype)
        n = shape[-1]
        out = fn(*(a.reshape(math.prod(shape[:-1]), n) for a in arrays))
        return jax.tree.map(lambda o: o.reshape(shape), out)

    return wrapped


# ----------------------------------------------------------------------------------------------
# Projections in sorted order, with custom derivatives.


def _l2_parts(s, w, valid):
    """PAV blocks of ``iso(s, w)`` (L2): each entry's block start and block size."""
    y = jax.lax.stop_gradient(s - w)
    start, _, (_, count) = pav("l2", (y, jnp.ones_like(y)), valid)
    return start, count


def _l2_out(s, w, start, count):
    # (s_i - c) - mean_B(s - c - w) with c the block's first s: the value of s - mean_B(s - w)
    # without cancelling large numbers; exact on ties (d = 0) and on singletons (-(-w_i)).
    d = s - _row_take(s, start)
    return d - _segment_sum(d - w, start) / count


@jax.custom_jvp
def proj_l2(s, w, valid):
    """``s - iso_l2(s, w)`` for ``[R, n]`` rows sorted in decreasing order of ``s``."""
    return _l2_out(s, w, *_l2_parts(s, w, valid))


@proj_l2.defjvp
def _proj_l2_jvp(primals, tangents):
    s, w, valid = primals
    ds, dw, _ = tangents
    start, count = _l2_parts(s, w, valid)
    out = _l2_out(s, w, start, count)
    dout = ds - _segment_sum(ds - dw, start) / count
    return out, dout


def _kl_parts(s, w, valid):
    start, end, (lse_s, lse_w) = pav(
        "kl", (jax.lax.stop_gradient(s), jax.lax.stop_gradient(w)), valid
    )
    return start, end - start == 1, lse_s, lse_w


def _kl_out(s, w, single, lse_s, lse_w):
    # A singleton block's output is its own w, exactly: (s - lse_s) is 0 in exact arithmetic,
    # but when s is an expression (positions / temperature) XLA fuses it into this subtraction
    # and LLVM contracts the two into an FMA, while the solver saw s rounded: the difference
    # was one ulp of s (a KL soft sort 0.03 off at temperature 1e-3, n = 1,000, with no block
    # pooled). Pooled blocks may keep a rounding of that order (s is of order n / temperature).
    return jnp.where(single, w, (s - lse_s) + lse_w)


@jax.custom_jvp
def proj_kl(s, w, valid):
    """``s - iso_kl(s, w)`` for ``[R, n]`` rows sorted in decreasing order of ``s - w``."""
    _, single, lse_s, lse_w = _kl_parts(s, w, valid)
    return _kl_out(s, w, single, lse_s, lse_w)


@proj_kl.defjvp
def _proj_kl_jvp(primals, tangents):
    s, w, valid = primals
    ds, dw, _ = tangents
    start, single, lse_s, lse_w = _kl_parts(s, w, valid)
    out = _kl_out(s, w, single, lse_s, lse_w)
    # Block softmax weights; exponents are <= 0 by construction (no overflow at small ε). A
    # singleton's weights are exactly 1 (see `_kl_out`).
    p_s = jnp.where(single, 1.0, jnp.exp(jnp.minimum(s - lse_s, 0))).astype(s.dtype)
    p_w = jnp.where(single, 1.0, jnp.exp(jnp.minimum(w - lse_w, 0))).astype(w.dtype)
    dout = ds - _segment_sum(p_s * ds, start) + _segment_sum(p_w * dw, start)
    return out, dout
