"""jaxgames: vectorised equilibria of game-theoretic models of supply-chain and cyber risk.

The engine solves equilibria as mixed complementarity problems by a jit-compatible semismooth
Newton method with implicit derivatives; models live in :mod:`jaxgames.models`.
"""

__version__ = "0.1.0"

# Everything is imported on first use. The sweep, sensitivity-analysis and plotting layers need
# xarray, zarr, dask and matplotlib, so ``import jaxgames`` (and the engine and models) loads
# only JAX and NumPy; and the engine itself is lazy too, so that ``import jaxgames`` does not
# import JAX: the command line installs its Ctrl-C guard before JAX's import begins (an
# interrupt during JAX's import is otherwise swallowed by the garbage-collection hook it installs).
_LAZY = {
    "Equilibrium": ("jaxgames._games", "Equilibrium"),
    "StackelbergEquilibrium": ("jaxgames._games", "StackelbergEquilibrium"),
    "bayesian_nash": ("jaxgames._games", "bayesian_nash"),
    "best_response": ("jaxgames._games", "best_response"),
    "nash_bargaining": ("jaxgames._games", "nash_bargaining"),
    "nash_equilibrium": ("jaxgames._games", "nash_equilibrium"),
    "stackelberg": ("jaxgames._games", "stackelberg"),
    "small_solve": ("jaxgames._linalg", "small_solve"),
    "SensitivityMatrix": ("jaxgames._sensitivity", "SensitivityMatrix"),
    "jacobian": ("jaxgames._sensitivity", "jacobian"),
    "sensitivity_matrix": ("jaxgames._sensitivity", "sensitivity_matrix"),
    "Newton": ("jaxgames._solver", "Newton"),
    "Solution": ("jaxgames._solver", "Solution"),
    "Status": ("jaxgames._solver", "Status"),
    "complementarity_residual": ("jaxgames._solver", "complementarity_residual"),
    "solve_mcp": ("jaxgames._solver", "solve_mcp"),
    "Interval": ("jaxgames._validation", "Interval"),
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
    "use_cpu_cores": ("jaxgames._devices", "use_cpu_cores"),
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
