"""Parameter domains: eager errors for concrete inputs, flags for traced ones.

A model declares each parameter's allowed interval once. Called with concrete values (plain
Python/NumPy/JAX arrays outside a transformation) it raises a ``ValueError`` that names the
parameter, the offending value and the allowed range -- before anything is compiled. Under
``jit``/``vmap`` the values are tracers and cannot raise, so the model instead stores
``inputs_valid`` and marks the point ``Status.INVALID_INPUT``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgames._solver import Status


@dataclasses.dataclass(frozen=True)
class Interval:
    """A real interval; ``lo``/``hi`` may be infinite; open ends are excluded."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def __str__(self) -> str:
        left = "(" if self.lo_open or math.isinf(self.lo) else "["
        right = ")" if self.hi_open or math.isinf(self.hi) else "]"
        fmt = lambda v: "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:g}"  # noqa: E731
        return f"{left}{fmt(self.lo)}, {fmt(self.hi)}{right}"

    def contains(self, v, xp=jnp):
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above & below & xp.isfinite(v)  # NaN fails the comparisons; inf is no value


def _is_traced(v: Any) -> bool:
    return isinstance(v, jax.core.Tracer)


def check_domain(params: Any, domains: Mapping[str, Interval], model: str) -> None:
    """Raise ``ValueError`` if any concrete leaf of the NamedTuple ``params`` is out of range.

    Traced leaves are skipped (see :func:`inputs_valid`).
    """
    for name, interval in domains.items():
        if not hasattr(params, name):  # a domain may also cover other inputs (decisions)
            continue
        v = getattr(params, name)
        if _is_traced(v):
            continue
        arr = np.asarray(v)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"{model}: parameter {name} must be real-valued, got dtype {arr.dtype}")
        ok = np.asarray(interval.contains(arr.astype(float), xp=np), dtype=bool)
        if not ok.all():
            bad = arr.reshape(-1)[np.flatnonzero(~ok.reshape(-1))[0]]
            raise ValueError(
                f"{model}: parameter {name}={bad.item()!r} is outside its allowed range {interval}"
            )


def inputs_valid(params: Any, domains: Mapping[str, Interval]) -> jax.Array:
    """Boolean array (broadcast over the leaves): every parameter lies in its domain."""
    ok = jnp.array(True)
    for name, interval in domains.items():
        if hasattr(params, name):
            ok = ok & interval.contains(jnp.asarray(getattr(params, name)))
    return ok


def is_setting(value: Any) -> bool:
    """A static setting of a params NamedTuple: ``None`` or a pytree without array leaves (e.g.
    a :class:`~jaxgames.models.defender_attacker.Quadrature` law). Settings are fixed for a
    sweep and part of the compiled program; they are never swept or differentiated."""
    return not jax.tree_util.tree_leaves(value)


def numeric_fields(params: Any) -> tuple[str, ...]:
    """The fields of a params NamedTuple that are numbers (sweepable), not settings."""
    return tuple(f for f in params._fields if not is_setting(getattr(params, f)))


def describe_setting(value: Any) -> Any:
    """A JSON-able description of a setting (for provenance attrs and sweep keys)."""
    if value is None:
        return None
    if dataclasses.is_dataclass(value):
        return {"type": type(value).__name__, **dataclasses.asdict(value)}
    return repr(value)


def as_point(params: Any, domains: Mapping[str, Interval], model: str) -> tuple[Any, jax.Array]:
    """One parameter point for a model's solvers: the numeric fields of the NamedTuple
    ``params`` as JAX scalars of one floating dtype (settings untouched), and
    :func:`inputs_valid`. A leaf that is not a scalar is a ``ValueError``: solvers take one
    point, batches are ``vmap``-ped."""
    numeric = numeric_fields(params)
    dtype = jnp.result_type(*[jnp.asarray(getattr(params, f)) for f in numeric], float)
    params = params._replace(**{f: jnp.asarray(getattr(params, f), dtype) for f in numeric})
    shapes = {jnp.shape(getattr(params, f)) for f in numeric}
    if shapes != {()}:
        raise ValueError(f"{model}: the solvers take one parameter point (scalar leaves); vmap "
                         f"over a batch. Got leaf shapes {sorted(shapes)}")
    return params, inputs_valid(params, domains)


def flag_invalid(status: jax.Array, valid: jax.Array) -> jax.Array:
    """``status``, or ``INVALID_INPUT`` where the inputs were outside the domain."""
    return jnp.where(valid, status, jnp.int32(Status.INVALID_INPUT))


def first_failure(*statuses: jax.Array) -> jax.Array:
    """The first non-SUCCESS status of a chain of solves (SUCCESS if all succeeded)."""
    out = statuses[0]
    for st in statuses[1:]:
        out = jnp.where(out == Status.SUCCESS, st, out)
    return out
