"""``jacobian`` / ``sensitivity_matrix`` on model-like functions returning NamedTuples.

Two models of the same Cournot duopoly (P = a - b Q, costs c1, c2):

* ``closed_model`` evaluates the closed form with plain jnp arithmetic (cheap, exact), used to
  pin down the bookkeeping: which outputs are kept, orders, subsets, elasticities, errors;
* ``solver_model`` computes the same equilibrium with ``nash_equilibrium`` (one jitted core), so
  its sensitivities are implicit-function-theorem derivatives, checked against the analytic
  derivatives and central finite differences.

Both also return diagnostics (a float ``residual``, a bool ``converged``, int ``iterations`` and
``status``) that carry no derivative and must be skipped.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgames import (
    Newton,
    SensitivityMatrix,
    Status,
    jacobian,
    nash_equilibrium,
    sensitivity_matrix,
)


class Params(NamedTuple):
    a: float
    b: float
    c1: float
    c2: float


class Output(NamedTuple):
    q1: jax.Array
    residual: jax.Array  # float diagnostic: skipped by name
    q2: jax.Array
    converged: jax.Array  # bool: skipped
    price: jax.Array
    iterations: jax.Array  # int: skipped
    profit1: jax.Array
    status: jax.Array  # int: skipped


PARAMS = Params(a=10.0, b=1.5, c1=1.0, c2=2.0)
FLOAT_OUTPUTS = ("q1", "q2", "price", "profit1")


def closed_model(p: Params) -> Output:
    q1 = (p.a - 2 * p.c1 + p.c2) / (3 * p.b)
    q2 = (p.a - 2 * p.c2 + p.c1) / (3 * p.b)
    price = p.a - p.b * (q1 + q2)
    return Output(
        q1=jnp.asarray(q1), residual=jnp.asarray(0.0) * q1, q2=jnp.asarray(q2),
        converged=jnp.asarray(True), price=jnp.asarray(price), iterations=jnp.int32(3),
        profit1=jnp.asarray((price - p.c1) * q1), status=jnp.int32(Status.SUCCESS),
    )


def _costs(q, p):
    a, b, c1, c2 = p
    price = a - b * (q[0] + q[1])
    return -jnp.stack([(price - c1) * q[0], (price - c2) * q[1]])


def solver_model(p: Params) -> Output:
    theta = jnp.stack([jnp.asarray(v, jnp.float64) for v in p])
    eq = nash_equilibrium(_costs, [[0], [1]], jnp.ones(2), theta, lower=0.0)
    q1, q2 = eq.x[0], eq.x[1]
    price = p.a - p.b * (q1 + q2)
    return Output(q1=q1, residual=eq.residual, q2=q2, converged=eq.converged, price=price,
                  iterations=eq.iterations, profit1=(price - p.c1) * q1, status=eq.status)


solver_model_jit = jax.jit(solver_model)


def one_step_model(p: Params) -> Output:
    """The solver model stopped after one Newton step from far away (status MAX_STEPS)."""
    theta = jnp.stack([jnp.asarray(v, jnp.float64) for v in p])
    eq = nash_equilibrium(_costs, [[0], [1]], jnp.full(2, 50.0), theta, lower=0.0,
                          solver=Newton(max_steps=1))
    q1, q2 = eq.x[0], eq.x[1]
    price = p.a - p.b * (q1 + q2)
    return Output(q1=q1, residual=eq.residual, q2=q2, converged=eq.converged, price=price,
                  iterations=eq.iterations, profit1=(price - p.c1) * q1, status=eq.status)


one_step_model_jit = jax.jit(one_step_model)


def analytic_jacobian(p: Params) -> np.ndarray:
    """Rows q1, q2, price, profit1; columns a, b, c1, c2."""
    a, b, c1, c2 = p
    q1 = (a - 2 * c1 + c2) / (3 * b)
    q2 = (a - 2 * c2 + c1) / (3 * b)
    return np.array([
        [1 / (3 * b), -q1 / b, -2 / (3 * b), 1 / (3 * b)],
        [1 / (3 * b), -q2 / b, 1 / (3 * b), -2 / (3 * b)],
        [1 / 3, 0.0, 1 / 3, 1 / 3],
        # profit1 = b q1^2
        [2 * q1 / 3, -(q1**2), -4 * q1 / 3, 2 * q1 / 3],
    ])


def fd_jacobian(fn, p: Params, h=1e-6) -> np.ndarray:
    cols = []
    for name in p._fields:
        up = fn(p._replace(**{name: getattr(p, name) + h}))
        down = fn(p._replace(**{name: getattr(p, name) - h}))
        cols.append([(float(getattr(up, o)) - float(getattr(down, o))) / (2 * h)
                     for o in FLOAT_OUTPUTS])
    return np.array(cols).T


def _as_matrix(jac, outputs, params):
    return np.array([[float(jac[o][p]) for p in params] for o in outputs])


# --------------------------------------------------------------------------------------------
# bookkeeping (closed-form model)
# --------------------------------------------------------------------------------------------


def test_jacobian_skips_diagnostics_and_matches_analytic():
    jac = jacobian(closed_model, PARAMS)
    assert set(jac) == set(FLOAT_OUTPUTS)  # no residual / converged / iterations / status
    for o in FLOAT_OUTPUTS:
        assert set(jac[o]) == set(Params._fields)
    np.testing.assert_allclose(_as_matrix(jac, FLOAT_OUTPUTS, Params._fields),
                               analytic_jacobian(PARAMS), rtol=1e-13, atol=1e-15)


def test_jacobian_subsets():
    jac = jacobian(closed_model, PARAMS, wrt=["c2", "a"], outputs=["price"])
    assert set(jac) == {"price"} and set(jac["price"]) == {"a", "c2"}
    assert float(jac["price"]["a"]) == pytest.approx(1 / 3, rel=1e-14)
    assert float(jac["price"]["c2"]) == pytest.approx(1 / 3, rel=1e-14)


def test_sensitivity_matrix_orders():
    sm = sensitivity_matrix(closed_model, PARAMS)
    assert isinstance(sm, SensitivityMatrix)
    assert sm.outputs == FLOAT_OUTPUTS  # the model's field order, diagnostics skipped
    assert sm.params == Params._fields
    assert sm.matrix.shape == (4, 4)
    np.testing.assert_allclose(np.asarray(sm.matrix), analytic_jacobian(PARAMS), rtol=1e-13,
                               atol=1e-15)
    # the caller's orders are kept
    sub = sensitivity_matrix(closed_model, PARAMS, wrt=("c2", "a"), outputs=("profit1", "q1"))
    assert sub.outputs == ("profit1", "q1") and sub.params == ("c2", "a")
    full = analytic_jacobian(PARAMS)
    np.testing.assert_allclose(np.asarray(sub.matrix), full[np.ix_([3, 0], [3, 0])],
                               rtol=1e-13)


def test_elasticity():
    sm = sensitivity_matrix(closed_model, PARAMS, elasticity=True)
    out = closed_model(PARAMS)
    x = np.array([float(getattr(out, o)) for o in FLOAT_OUTPUTS])
    theta = np.array(PARAMS)
    expected = analytic_jacobian(PARAMS) * theta[None, :] / x[:, None]
    np.testing.assert_allclose(np.asarray(sm.matrix), expected, rtol=1e-13, atol=1e-15)
    # price is homogeneous of degree 1 in (a, c1, c2): its elasticities sum to 1
    assert float(jnp.sum(sm.matrix[2])) == pytest.approx(1.0, rel=1e-13)
    # demand q1 = (a - 2 c1 + c2) / (3b): elasticity w.r.t. b is exactly -1
    assert float(sm.matrix[0, 1]) == pytest.approx(-1.0, rel=1e-13)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown parameter"):
        jacobian(closed_model, PARAMS, wrt=["a", "not_a_param"])
    with pytest.raises(ValueError, match="unknown parameter"):
        sensitivity_matrix(closed_model, PARAMS, wrt=["d"])
    with pytest.raises(ValueError, match="non-float output"):
        jacobian(closed_model, PARAMS, outputs=["q1", "nope"])
    with pytest.raises(ValueError, match="non-float output"):
        jacobian(closed_model, PARAMS, outputs=["converged"])  # bool: no derivative
    with pytest.raises(ValueError, match="non-float output"):
        sensitivity_matrix(closed_model, PARAMS, outputs=["iterations"])


# --------------------------------------------------------------------------------------------
# implicit derivatives through a solver-based model
# --------------------------------------------------------------------------------------------


def test_solver_model_jacobian_vs_fd_and_analytic():
    """The natural usage: jit the model, then ask for its sensitivities (eagerly)."""
    out = solver_model_jit(PARAMS)
    assert bool(out.converged) and out.converged.dtype == jnp.bool_
    assert jnp.issubdtype(out.iterations.dtype, jnp.integer)
    sm = sensitivity_matrix(solver_model_jit, PARAMS)
    assert sm.outputs == FLOAT_OUTPUTS and sm.params == Params._fields
    mat = np.asarray(sm.matrix)
    np.testing.assert_allclose(mat, analytic_jacobian(PARAMS), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(mat, fd_jacobian(solver_model_jit, PARAMS), rtol=1e-7, atol=1e-8)
    jac = jacobian(solver_model_jit, PARAMS)
    assert set(jac) == set(FLOAT_OUTPUTS)
    np.testing.assert_allclose(_as_matrix(jac, FLOAT_OUTPUTS, Params._fields), mat, rtol=1e-15)
    el = np.asarray(sensitivity_matrix(solver_model_jit, PARAMS, elasticity=True).matrix)
    x = np.array([float(getattr(out, o)) for o in FLOAT_OUTPUTS])
    np.testing.assert_allclose(el, mat * np.array(PARAMS)[None, :] / x[:, None], rtol=1e-13)


def test_solver_model_with_binding_bound():
    """Firm 2 priced out (q2 = 0 at its bound): its quantity has zero sensitivity, firm 1 is
    a monopolist with q1 = (a - c1) / (2b)."""
    p = Params(a=10.0, b=1.0, c1=1.0, c2=8.0)
    out = solver_model_jit(p)
    assert float(out.q2) == pytest.approx(0.0, abs=1e-12)
    mat = np.asarray(sensitivity_matrix(solver_model_jit, p).matrix)
    np.testing.assert_allclose(mat[1], 0.0, atol=1e-14)
    q1 = (p.a - p.c1) / (2 * p.b)
    np.testing.assert_allclose(mat[0], [1 / (2 * p.b), -q1 / p.b, -1 / (2 * p.b), 0.0],
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mat, fd_jacobian(solver_model_jit, p), rtol=1e-7, atol=1e-8)


def test_derivatives_of_a_failed_solve_are_nan_and_flagged():
    """A point that stopped at MAX_STEPS: ``jacobian`` is NaN everywhere (at 8f31d2c it
    returned derivatives of the unconverged iterate as if they were good) and
    ``sensitivity_matrix`` says ``derivative_ok = False`` with the status; a converged point
    says True."""
    out = one_step_model_jit(PARAMS)
    assert int(out.status) == Status.MAX_STEPS
    jac = jacobian(one_step_model_jit, PARAMS)
    assert all(np.isnan(float(jac[o][p])) for o in FLOAT_OUTPUTS for p in Params._fields)
    sm = sensitivity_matrix(one_step_model_jit, PARAMS)
    assert int(sm.status) == Status.MAX_STEPS and not bool(sm.derivative_ok)
    assert bool(jnp.all(jnp.isnan(sm.matrix)))
    good = sensitivity_matrix(solver_model_jit, PARAMS)
    assert int(good.status) == Status.SUCCESS and bool(good.derivative_ok)
    closed = sensitivity_matrix(closed_model, PARAMS)
    assert bool(closed.derivative_ok)


def test_model_status_masks_derivatives_the_engine_would_give():
    """A model status other than SUCCESS (here INVALID_INPUT set by the model, the solve itself
    being fine) masks the derivatives too."""

    def flagged(p):
        return solver_model(p)._replace(status=jnp.int32(Status.INVALID_INPUT))

    jac = jacobian(flagged, PARAMS, wrt=["a"], outputs=["q1"])
    assert np.isnan(float(jac["q1"]["a"]))
