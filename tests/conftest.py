"""Fixtures shared by the test files; plain helpers are in tests/helpers.py.

The tests mirror the source tree: tests/repeval/ for the engine (repeval/), tests/models/ for the encoder
families (models/, installed as repeval.models), tests/protocols/ for the protocols (protocols/).
"""
import repeval  # first: it sets OpenMP's wait policy before torch loads OpenMP (repeval.runtime)
import pytest
import torch

from repeval.estimators.mi import cpu_threads
from repeval.store.progress import setup_logging
from tests.helpers import blob_task

repeval.load_builtins()
torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def inline_by_default():
    """`repeval run` keeps its models in the test's process unless a test passes --jobs (spawned
    workers would not see the test's registrations and patches; tests/repeval/test_workers.py
    tests them). Session-wide, so module fixtures that run the grid see it too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("repeval.engine.session.default_jobs", lambda device, turns: 1)
        yield


@pytest.fixture
def tiny_run(tmp_path):
    """Arguments for a tiny `repeval run` on the embedded digits data inside tmp_path."""
    def args(*extra, models="ae", protocols="mlp"):
        return ["run", "--models", models, "--protocols", protocols, "--quiet", "--no-table",
                "--workdir", str(tmp_path / "work"), "--results", str(tmp_path / "results"),
                "--seeds", "1", "--set", "train.epochs=1", "--set", "train.max_train=256", "--set", "mlp.epochs=2",
                *extra]
    return args


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (small problems run faster that way on a shared machine);
    the thread count is restored afterwards. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with cpu_threads(1):
        yield


@pytest.fixture
def restore_logging():
    """Console logging back to its default after the test (tests that change the verbosity or add a log
    file). Use with ``pytestmark = pytest.mark.usefixtures("restore_logging")``."""
    yield
    setup_logging(0)


@pytest.fixture(scope="module")
def image_batch():
    """The encoder families' tiny data: 128 random 3x32x32 images in [-1, 1] and labels, seeded."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(128, 3, 32, 32, generator=g) * 2 - 1, torch.randint(0, 10, (128,), generator=g)


@pytest.fixture(scope="module")
def separable():
    """Table X's protocols' task with well separated classes: kNN and the linear probe must score 100 %."""
    return blob_task(sep=6.0)


@pytest.fixture(scope="module")
def random_labels():
    """The same task with labels independent of the features: chance accuracy."""
    return blob_task(sep=0.0)
