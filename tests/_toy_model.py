"""A small model that uses every optional part of the model contract (tests only).

``n`` competing players (dim ``csc``), player ``i`` choosing ``q_i >= 0`` to maximise
``v_i q_i - c q_i^2 / (2 g)`` with ``g = G[regime]`` a categorical gain, so the equilibrium is
``q_i = g v_i / c`` (the first-order condition ``v_i - c q_i / g = 0``). The stochastic
``simulate`` draws per-agent shocks ``z ~ N(0, 1)`` over ``agent = (R1, R2, W1)`` from the
sweep's key only, and costs ``cost = c g (1 + noise z)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgames._validation import Interval

Array = jax.Array

MODEL = "toy_contract"
TRACES = {"equilibrium": 0, "simulate": 0}  # incremented when JAX traces a solve function


class Params(NamedTuple):
    v: Array  # valuations, one per player (dim csc)
    c: Array | float  # cost coefficient
    regime: Array | int  # categorical: index into CATEGORIES["regime"]
    noise: Array | float  # relative size of the cost shocks


GAIN = (1.0, 0.5, 2.0)  # g of regimes A, B, C

DOMAIN = {"v": Interval(0.0, np.inf, lo_open=True), "c": Interval(0.0, np.inf, lo_open=True),
          "noise": Interval(0.0, 1.0)}
UNITS = {"v": "$/unit", "c": "$/unit^2", "noise": "1"}
DESCRIPTIONS = {"v": "valuation", "c": "cost coefficient", "q": "quantity", "Q": "total",
                "cost": "cost per agent", "z": "shock per agent"}
OUTPUT_UNITS = {"q": "unit", "Q": "unit", "cost": "$", "z": "1", "mean_cost": "$"}
PARAM_DIMS = {"v": "csc"}
OUTPUT_DIMS = {"q": ("csc",), "cost": ("agent",), "z": ("agent",)}
DIM_COORDS = {"agent": ("R1", "R2", "W1")}
CATEGORIES = {"regime": ("A", "B", "C")}
STOCHASTIC = ("simulate",)
DEFAULT = Params(v=np.array([1.0, 2.0, 3.0]), c=2.0, regime=0, noise=0.1)
SOLVE_FUNCTIONS = ("equilibrium", "simulate")


class Equilibrium(NamedTuple):
    q: Array  # (n,)
    Q: Array
    converged: Array
    residual: Array


class Simulation(NamedTuple):
    cost: Array  # (3,) over agent
    z: Array  # (3,)
    mean_cost: Array
    converged: Array


def _gain(regime):
    return jnp.take(jnp.asarray(GAIN), regime)


def equilibrium(params: Params) -> Equilibrium:
    TRACES["equilibrium"] += 1
    g = _gain(params.regime)
    q = g * params.v / params.c
    foc = params.v - params.c * q / g
    return Equilibrium(q, jnp.sum(q), jnp.bool_(True), jnp.max(jnp.abs(foc)))


def simulate(params: Params, key) -> Simulation:
    TRACES["simulate"] += 1
    z = jax.random.normal(key, (3,), dtype=jnp.result_type(params.c))
    cost = params.c * _gain(params.regime) * (1.0 + params.noise * z)
    return Simulation(cost, z, jnp.mean(cost), jnp.bool_(True))


def undeclared(params: Params) -> dict:
    """An output with a trailing shape that OUTPUT_DIMS does not declare (a model bug)."""
    return {"x": jnp.zeros(2) + params.c}
