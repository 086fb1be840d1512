"""Test configuration: float64 everywhere, rank promotion errors, CPU only, and derandomised
hypothesis (every property test draws the same examples on every run and machine; no example
database), so a failure is reproducible and a green run is not luck."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
from hypothesis import settings  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

# Test-level @settings(...) inherit every option they do not set from the loaded profile.
settings.register_profile("jaxgames", derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.load_profile("jaxgames")
