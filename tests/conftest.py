import pytest
import torch

import repeval

repeval.load_builtins()
torch.set_num_threads(2)


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
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
