"""Shared test set-up: 8 fake CPU devices, and ../shared/data when it exists."""

import os

# Before JAX is imported anywhere: the multi-device code paths run on 8 CPU devices in tests.
# Each test compiles small programs and runs them a few times, so compiling costs more than running:
# XLA's CPU back end optimises less (about a fifth less test time). Level 1 keeps every result the
# exact tests pin; level 0 does not (the JAX rasteriser's edge pixels change).
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8"
    + " --xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One compilation cache for the whole run, this process and the training processes the tests start:
# a program compiled once (the same train step in several tests, in every process of a multi-process
# test, again after a restart) is read back instead of compiled again.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit  # noqa: E402
    import shutil  # noqa: E402
    import tempfile  # noqa: E402

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="compat-tests-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COMPAT_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test (with the reason) when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the shared data set beside the repository); absent on this machine")
    return p


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    return shared_path("kodak")


@pytest.fixture(scope="session")
def lpips_ref_dir() -> Path:
    return shared_path("lpips_ref")


@pytest.fixture(scope="session")
def natural_pair() -> tuple[np.ndarray, np.ndarray]:
    """A photo that ships with scikit-image (300x451, odd width) and a noisy, blurred version of it."""
    from scipy.ndimage import uniform_filter
    from skimage import data

    x = data.chelsea()
    rng = np.random.default_rng(0)
    y = uniform_filter(x.astype(np.float64), size=(3, 3, 1)) + rng.normal(0, 8, x.shape)
    return x, np.clip(np.round(y), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A `trimesh-decode dataset` folder of 8 crops of 2 synthetic photos (50 encoder iterations),
    built once for every test of the neural decoder; tests copy it before changing anything."""
    from trimesh_helpers import build_tiny_dataset

    return build_tiny_dataset(tmp_path_factory.mktemp("neural"))
