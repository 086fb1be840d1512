"""The models shipped with jaxgames, one module per source (see MODELS.md).

Every model module declares the same metadata, which the sweep engine, the sweep files and the
command line read:

* ``MODEL`` -- its name; ``Params`` -- a NamedTuple of scalar parameters;
* ``DOMAIN`` -- ``{parameter: Interval}``, the allowed values (input validation);
* ``UNITS`` -- ``{parameter: unit}``; ``DESCRIPTIONS`` -- ``{parameter or output: text}``;
* ``OUTPUT_UNITS`` -- ``{output: unit}`` for the outputs of its solve functions;
* ``DEFAULT`` -- the base point a sweep file starts from;
* ``SOLVE_FUNCTIONS`` -- names of the functions ``params -> NamedTuple`` that can be swept.
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
}


def get_model(name: str) -> types.ModuleType:
    """The model module called ``name``; ``ValueError`` naming the known models otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; the models are {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])
