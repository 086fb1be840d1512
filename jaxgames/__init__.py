"""jaxgames: vectorised equilibria of game-theoretic models of supply-chain and cyber risk.

The engine solves equilibria as mixed complementarity problems by a jit-compatible semismooth
Newton method with implicit derivatives; models live in :mod:`jaxgames.models`.
"""

from jaxgames._games import (
    Equilibrium as Equilibrium,
)
from jaxgames._games import (
    StackelbergEquilibrium as StackelbergEquilibrium,
)
from jaxgames._games import (
    bayesian_nash as bayesian_nash,
)
from jaxgames._games import (
    best_response as best_response,
)
from jaxgames._games import (
    nash_bargaining as nash_bargaining,
)
from jaxgames._games import (
    nash_equilibrium as nash_equilibrium,
)
from jaxgames._games import (
    stackelberg as stackelberg,
)
from jaxgames._linalg import small_solve as small_solve
from jaxgames._sensitivity import (
    SensitivityMatrix as SensitivityMatrix,
)
from jaxgames._sensitivity import (
    jacobian as jacobian,
)
from jaxgames._sensitivity import (
    sensitivity_matrix as sensitivity_matrix,
)
from jaxgames._solver import (
    Newton as Newton,
)
from jaxgames._solver import (
    Solution as Solution,
)
from jaxgames._solver import (
    Status as Status,
)
from jaxgames._solver import (
    complementarity_residual as complementarity_residual,
)
from jaxgames._solver import (
    solve_mcp as solve_mcp,
)
from jaxgames._validation import Interval as Interval

__version__ = "0.1.0"

# The sweep, sensitivity-analysis and plotting layers need xarray, zarr, dask and matplotlib;
# they are imported on first use, so that ``import jaxgames`` (and the engine and models) load
# only JAX and NumPy.
_LAZY = {
    "design": ("jaxgames.design", None),
    "plots": ("jaxgames.plots", None),
    "sensitivity": ("jaxgames.sensitivity", None),
    "ChunkInfo": ("jaxgames._sweep", "ChunkInfo"),
    "combine": ("jaxgames._sweep", "combine"),
    "open_sweep": ("jaxgames._sweep", "open_sweep"),
    "sweep": ("jaxgames._sweep", "sweep"),
    "load_sweep": ("jaxgames.sweepfile", "load_sweep"),
    "summaries": ("jaxgames.summaries", None),
    "ModelSpec": ("jaxgames._contract", "ModelSpec"),
    "SolveSpec": ("jaxgames._contract", "SolveSpec"),
    "model_spec": ("jaxgames._contract", "model_spec"),
    "solve_spec": ("jaxgames._contract", "solve_spec"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'jaxgames' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
