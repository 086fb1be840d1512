"""Test configuration: float64 everywhere, rank promotion errors, CPU only, and derandomised
hypothesis (every property test draws the same examples on every run and machine; no example
database), so a failure is reproducible and a green run is not luck."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

# Test-level @settings(...) inherit every option they do not set from the loaded profile.
settings.register_profile("jaxgames", derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.load_profile("jaxgames")


@pytest.fixture(autouse=True, scope="session")
def _cache_home(tmp_path_factory):
    """In-process CLI runs (``figure3``, ``sweep`` without ``--no-compilation-cache``) put
    their compilation cache under ``$XDG_CACHE_HOME``: a temporary one, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _no_persistent_compilation_cache():
    """A test that turned JAX's persistent compilation cache on (the CLI does, in-process)
    turns it off again, so later tests compile without writing cache entries (process-wide
    state must not leak from one test into the next)."""
    yield
    if jax.config.jax_compilation_cache_dir is not None:
        from jax._src import compilation_cache

        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """The suite compiles hundreds of programs in one process, and XLA maps each one's code in
    many pieces: past the kernel's limit on a process's memory mappings (``vm.max_map_count``)
    the next compilation fails ("LLVM compilation error: Cannot allocate memory") and the
    process crashes. After a test, compiled programs are released when half the limit is used
    (:func:`jaxgames._sweep.release_compiled_programs`); tests compile again what they need."""
    yield
    from jaxgames import _sweep

    _sweep.release_compiled_programs()
