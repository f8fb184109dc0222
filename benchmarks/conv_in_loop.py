"""XLA:CPU convolution gradients inside a loop over tasks vs unrolled (the #4 investigation).

    python benchmarks/conv_in_loop.py      # ~2 min on 2 cores

One Conv4 layer's shapes (80 images of 14x14x64, 3x3 SAME, 64 filters),
4 tasks each with its own weights. For the forward conv and for the two
gradients JAX's autodiff emits (input gradient: a conv with swapped kernel
dimension numbers; weight gradient: a conv contracting the batch), time the
computation inside ``lax.map`` over tasks (an XLA while loop, how metajax runs
per-task weights on CPU) and unrolled in Python. Then the same gradients
written as canonical NHWC/HWIO convs on explicitly transposed operands
(flipped, in/out-swapped kernel; batch moved into the feature axis), which
give the same numbers. Medians of 5 runs.
"""

import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DN = ("NHWC", "HWIO", "NHWC")


def conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)


def autodiff_dx(x, w, g):
    return jax.vjp(lambda x: conv(x, w), x)[1](g)[0]


def autodiff_dw(x, w, g):
    return jax.vjp(lambda w: conv(x, w), w)[1](g)[0]


def explicit_dx(x, w, g):
    return conv(g, jnp.flip(w, (0, 1)).swapaxes(2, 3))


def explicit_dw(x, w, g):
    out = lax.conv_general_dilated(
        x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN
    )
    return out.transpose(1, 2, 0, 3)


def median_ms(f, *args, n=5):
    f = jax.jit(f)
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def main() -> int:
    t = 4
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k[0], (t, 80, 14, 14, 64))
    w = jax.random.normal(k[1], (t, 3, 3, 64, 64))
    g = jax.random.normal(k[2], (t, 80, 14, 14, 64))
    np.testing.assert_allclose(explicit_dx(x[0], w[0], g[0]), autodiff_dx(x[0], w[0], g[0]), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(explicit_dw(x[0], w[0], g[0]), autodiff_dw(x[0], w[0], g[0]), rtol=1e-4, atol=1e-2)
    print(
        f"{platform.processor() or platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s), "
        f"jax {jax.__version__}; ms for {t} tasks, median of 5\n"
    )
    print("| computation | inside lax.map | unrolled | loop / unrolled |\n|---|---|---|---|")
    for name, f in [
        ("forward conv", lambda x, w, g: conv(x, w)),
        ("input grad (autodiff)", autodiff_dx),
        ("weight grad (autodiff)", autodiff_dw),
        ("input grad (explicit canonical conv)", explicit_dx),
        ("weight grad (explicit canonical conv)", explicit_dw),
    ]:
        loop = median_ms(lambda x, w, g, f=f: lax.map(lambda a: f(*a), (x, w, g)), x, w, g)
        unrolled = median_ms(lambda x, w, g, f=f: [f(x[i], w[i], g[i]) for i in range(t)], x, w, g)
        print(f"| {name} | {loop:.1f} | {unrolled:.1f} | {loop / unrolled:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
