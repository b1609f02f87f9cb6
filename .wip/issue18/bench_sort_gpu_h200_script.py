"""argsort vs one packed int64 key (issue 18's mechanism) on the default device."""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
from jax import lax

def packed_argsort(x):
    with jax.enable_x64(True):
        b = lax.bitcast_convert_type(x, jnp.int32)
        key = jnp.where(b < 0, b ^ jnp.int32(0x7FFFFFFF), b).astype(jnp.int64)
        pos = lax.broadcasted_iota(jnp.int64, x.shape, x.ndim - 1)
        packed = (key << 32) | pos
        return (lax.sort(packed, dimension=-1) & 0xFFFFFFFF).astype(jnp.int32)

def bench(f, x, reps=50):
    f(x).block_until_ready()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(x).block_until_ready(); t.append(time.perf_counter() - t0)
    return float(np.median(t))

rows = []
for shape in [(100_000,), (1_000_000,), (128, 1000), (1024, 100), (16, 10_000)]:
    x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
    x = x.at[..., ::7].set(0.0)  # ties
    a = jax.jit(lambda v: jnp.argsort(v, axis=-1, stable=True))
    p = jax.jit(packed_argsort)
    ok = bool(jnp.all(a(x) == p(x)))
    ta, tp = bench(a, x), bench(p, x)
    rows.append(dict(shape=shape, argsort_ms=ta * 1e3, packed_ms=tp * 1e3, speedup=ta / tp, equal=ok))
    print(f"{str(shape):14s} argsort {ta*1e3:8.3f} ms  packed {tp*1e3:8.3f} ms  x{ta/tp:5.2f}  equal={ok}", flush=True)
meta = dict(device=str(jax.devices()[0].device_kind), jax=jax.__version__, rows=rows)
json.dump(meta, open(sys.argv[1], "w"), indent=1)
