"""Sensitivities of equilibria to parameters, by implicit differentiation.

Every solve in jaxgames carries an implicit-function-theorem JVP, so ``jax.jacfwd``/``jax.grad``
of a model function are derivatives of the *equilibrium*, not of the iterations. These helpers
select parameter leaves by name and return labelled results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxgames._solver import Status

Array = jax.Array


#: Diagnostic outputs that are floats but not functions of the parameters.
_DIAGNOSTICS = frozenset({"residual"})


def _float_outputs(out: Any) -> dict[str, Array]:
    items = out._asdict().items() if hasattr(out, "_asdict") else dict(out).items()
    return {
        k: v for k, v in items
        if k not in _DIAGNOSTICS and jnp.issubdtype(getattr(v, "dtype", None) or
                                                    jnp.asarray(v).dtype, jnp.inexact)
    }


def _names(params: Any, wrt: Sequence[str] | None) -> tuple[str, ...]:
    fields = params._fields
    if wrt is None:
        return tuple(fields)
    unknown = [w for w in wrt if w not in fields]
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; the parameters are {list(fields)}")
    return tuple(wrt)


def _status(out: Any) -> Array | None:
    items = out._asdict() if hasattr(out, "_asdict") else dict(out)
    return items.get("status")


def jacobian(
    fn: Callable[[Any], Any],
    params: Any,
    wrt: Sequence[str] | None = None,
    *,
    outputs: Sequence[str] | None = None,
) -> dict[str, dict[str, Array]]:
    """``{output: {parameter: d output / d parameter}}`` at one parameter point.

    Where ``fn``'s result has a ``status`` field that is not ``Status.SUCCESS`` (a solve that did
    not converge, an input outside the domain, a failed certificate), every derivative is NaN:
    the implicit function theorem says nothing about a point that is not a solution. The engine
    itself also returns NaN derivatives where a solve's Jacobian is singular or ill-conditioned
    (see :mod:`jaxgames._solver`). So a finite entry is a certified derivative; use
    :func:`sensitivity_matrix` for an explicit flag.

    Args:
        fn: a model function ``params -> NamedTuple`` (e.g. ``bakshi_kleindorfer.noncooperative``).
        params: a NamedTuple of parameters (scalar leaves).
        wrt: parameter names to differentiate with respect to (default: all).
        outputs: output names to keep (default: every floating-point output; boolean and integer
            diagnostics have no derivative).
    """
    return _jacobian_and_status(fn, params, wrt, outputs)[0]


def _jacobian_and_status(fn, params, wrt, outputs):
    names = _names(params, wrt)

    def f(selected):
        res = fn(params._replace(**selected))
        status = _status(res)
        out = _float_outputs(res)
        if outputs is not None:
            missing = [o for o in outputs if o not in out]
            if missing:
                raise ValueError(f"unknown or non-float output(s) {missing}")
            out = {k: out[k] for k in outputs}
        return out, status

    selected = {k: jnp.asarray(getattr(params, k), jnp.result_type(float)) for k in names}
    jac, status = jax.jacfwd(f, has_aux=True)(selected)
    if status is not None:
        ok = jnp.asarray(status) == Status.SUCCESS
        jac = jax.tree_util.tree_map(
            lambda d: jnp.where(jnp.reshape(ok, ok.shape + (1,) * (d.ndim - ok.ndim)), d,
                                jnp.nan), jac)
    return jac, status


class SensitivityMatrix(NamedTuple):
    """``matrix[i, j] = d outputs[i] / d params[j]`` (or the elasticity, if requested).

    ``status`` is the model's status at the point (``Status.SUCCESS`` if its result has none);
    ``derivative_ok`` is True where the status is SUCCESS and every entry of ``matrix`` is finite
    (a NaN marks a derivative that does not exist or cannot be trusted: see :func:`jacobian`).
    """

    matrix: Array
    outputs: tuple[str, ...]
    params: tuple[str, ...]
    status: Array = None
    derivative_ok: Array = None


def sensitivity_matrix(
    fn: Callable[[Any], Any],
    params: Any,
    wrt: Sequence[str] | None = None,
    *,
    outputs: Sequence[str] | None = None,
    elasticity: bool = False,
) -> SensitivityMatrix:
    """Full sensitivity matrix ``dx*/dtheta`` of an equilibrium (implicit function theorem).

    With ``elasticity=True`` returns ``(theta_j / x_i) dx_i/dtheta_j`` instead. Entries are NaN,
    and ``derivative_ok`` False, where the point is not a certified solution (see
    :func:`jacobian`).
    """
    names = _names(params, wrt)
    jac, status = _jacobian_and_status(fn, params, names, outputs)
    # Keep the caller's order, or the model's field order (jacfwd returns dicts sorted by key).
    outs = tuple(outputs) if outputs is not None else tuple(
        k for k in _float_outputs(jax.eval_shape(fn, params)) if k in jac
    )
    mat = jnp.stack([jnp.stack([jac[o][p] for p in names]) for o in outs])
    if elasticity:
        values = _float_outputs(fn(params))
        x = jnp.stack([values[o] for o in outs])
        theta = jnp.stack([jnp.asarray(getattr(params, p), mat.dtype) for p in names])
        mat = mat * theta[None, :] / x[:, None]
    status = jnp.int32(Status.SUCCESS) if status is None else jnp.asarray(status)
    ok = (status == Status.SUCCESS) & jnp.all(jnp.isfinite(mat))
    return SensitivityMatrix(mat, outs, names, status, ok)
