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
                "--set", "train.epochs=1", "--set", "train.max_train=256", "--set", "mlp.epochs=2", *extra]
    return args


@pytest.fixture
def one_thread():
    """One intra-op thread for tiny nets: fastest, and immune to CPU oversubscription."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
