"""Every CPU core at work: JAX's CPU backend as one device per core.

XLA's CPU backend runs one program on one device, and the loops that dominate jaxgames' CPU
programs (the tile loop of a wide batch, ``isb``'s one-kernel day loop) run on one thread: a
second core idles. JAX can present the CPU as several devices (``jax_num_cpu_devices``), whose
programs run side by side; code that splits its batch over them (``isb.simulate_runs`` and
``isb.experiment``, the sweep engine's sharded chunks) then uses every core. The number is
fixed when JAX starts its CPU backend, so :func:`use_cpu_cores` must run before the first JAX
computation of the process; the default stays JAX's (one device).
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def use_cpu_cores(n: int | None = None) -> int:
    """Give JAX's CPU backend ``n`` devices (default: one per available core), so that
    independent parts of a batch run on several cores at once. Returns the number of CPU
    devices JAX will use.

    Call it right after ``import jax`` and before any JAX computation (JAX fixes the number
    when its CPU backend starts). Called later, it raises ``RuntimeError`` naming the number
    JAX started with, unless that is already ``n``. Every device runs the same compiled program
    on its part of the batch: ``isb.simulate_runs`` and ``experiment`` give the same bits
    (tested), a sweep the same values up to the last bits where a model's results depend on
    its tile width (``defender_attacker``: within 2e-15 relative; ``benchmarks/README.md``).
    """
    import jax

    if n is None:
        n = available_cores()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"use_cpu_cores: n must be a positive integer, got {n!r}")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except AttributeError:  # jax releases without the option (0.4.34): the XLA flag
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return _started(n)
        flags = os.environ.get("XLA_FLAGS", "")
        flags = " ".join(f for f in flags.split()
                         if not f.startswith("--xla_force_host_platform_device_count"))
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    except RuntimeError:  # the backend has started
        return _started(n)
    return n


def _started(n: int) -> int:
    import jax

    have = len(jax.local_devices(backend="cpu"))
    if have != n:
        raise RuntimeError(
            f"use_cpu_cores({n}): JAX's CPU backend has already started with {have} "
            "device(s); call jaxgames.use_cpu_cores() right after `import jax`, before any "
            "JAX computation")
    return n


def cpu_devices(*args) -> list:
    """The local CPU devices to split an eager batch over: all of them when the default backend
    is the CPU and none of ``args`` is a tracer (inside ``jit`` or ``vmap`` the caller's program
    decides); otherwise ``[]``."""
    import jax

    if jax.default_backend() != "cpu" or traced(*args):
        return []
    devs = jax.local_devices(backend="cpu")
    return devs if len(devs) > 1 else []


def traced(*args) -> bool:
    """Whether the caller runs inside a trace (``jit``, ``vmap`` ...: a fresh array is a
    tracer there) or any leaf of ``args`` is a tracer."""
    import jax

    return isinstance(jax.numpy.zeros(()), jax.core.Tracer) or any(
        isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(args))


__all__ = ["available_cores", "cpu_devices", "traced", "use_cpu_cores"]
