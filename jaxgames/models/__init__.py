"""The models shipped with jaxgames, one module per source (each restates its
specification in its docstring).

Every model module declares the same metadata -- the model contract -- which the sweep engine,
the sweep files, sensitivity analysis, the plots and the command line read through one typed
description, :func:`jaxgames.model_spec` (and :func:`jaxgames.solve_spec` for a solve
function); see :mod:`jaxgames._contract` and README.md, "Adding a model":

* ``MODEL`` -- its name; ``Params`` -- a NamedTuple of parameters;
* ``DOMAIN`` -- ``{parameter: Interval}``, the allowed values (input validation);
* ``UNITS`` -- ``{parameter: unit}``; ``DESCRIPTIONS`` -- ``{parameter or output: text}``;
* ``OUTPUT_UNITS`` -- ``{output: unit}`` for the real-valued outputs of its solve functions;
* ``DEFAULT`` -- the base point a sweep file starts from;
* ``SOLVE_FUNCTIONS`` -- names of the functions ``params -> NamedTuple`` that can be swept;
* optional: ``PARAM_DIMS`` (vector parameters), ``OUTPUT_DIMS`` (outputs with trailing dims),
  ``DIM_COORDS`` (labels of dims), ``CATEGORIES`` (categorical parameters, integer codes in
  ``Params``), ``STOCHASTIC`` (solve functions ``(params, key) -> NamedTuple``), ``DEFAULTS``
  (base points of other input types).

A new model adds one line to :data:`REGISTRY`; ``tests/test_contract.py`` checks every
registered model against the contract.
"""

from __future__ import annotations

import importlib
import types

from jaxgames.models import bakshi_kleindorfer as bakshi_kleindorfer
from jaxgames.models import defender_attacker as defender_attacker

#: name -> module path of every shipped model.
REGISTRY = {
    "bakshi_kleindorfer": "jaxgames.models.bakshi_kleindorfer",
    "defender_attacker": "jaxgames.models.defender_attacker",
    "ctip": "jaxgames.models.ctip",
    "isb": "jaxgames.models.isb",
}


def get_model(name: str) -> types.ModuleType:
    """The model module called ``name``; ``ValueError`` naming the known models otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; the models are {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])
