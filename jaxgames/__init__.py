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

from jaxgames import design as design  # noqa: E402
from jaxgames import plots as plots  # noqa: E402
from jaxgames import sensitivity as sensitivity  # noqa: E402
from jaxgames import summaries as summaries  # noqa: E402
from jaxgames._contract import ModelSpec as ModelSpec  # noqa: E402
from jaxgames._contract import SolveSpec as SolveSpec  # noqa: E402
from jaxgames._contract import model_spec as model_spec  # noqa: E402
from jaxgames._contract import solve_spec as solve_spec  # noqa: E402
from jaxgames._sweep import ChunkInfo as ChunkInfo  # noqa: E402
from jaxgames._sweep import combine as combine  # noqa: E402
from jaxgames._sweep import open_sweep as open_sweep  # noqa: E402
from jaxgames._sweep import sweep as sweep  # noqa: E402
from jaxgames.sweepfile import load_sweep as load_sweep  # noqa: E402
