"""The restricted unpickler of CIFAR batch files (repeval/data/safe_pickle.py): the published archives need only
the allowed globals; a crafted pickle never runs."""
import os
import pickle
import pickletools

import numpy as np
import pytest

from repeval.cli import main
from repeval.data import DataError, load_dataset
from repeval.data.safe_pickle import _ALLOWED
from tests.helpers import cifar_entry, one_line, write_fake_cifar


def test_cifar_pickle_needs_only_the_allowed_globals(tmp_path):
    folder = write_fake_cifar(tmp_path)
    ops = list(pickletools.genops((folder / "test_batch").read_bytes()))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    names = {tuple(arg.split(" ")) for op, arg, _ in ops if op.name == "GLOBAL"}
    assert names and names <= set(_ALLOWED)
    assert ("numpy", "ndarray") in names and ("numpy", "dtype") in names


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("how", ["os.system", "builtins.exec", "nested", "codec", "protocol5"])
def test_crafted_cifar_pickle_does_not_run(tmp_path, how, capsys):
    folder = write_fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    entry = cifar_entry(np.random.default_rng(0), 20)
    if how == "os.system":
        payload = pickle.dumps(_Evil(os.system, cmd), protocol=2)
    elif how == "builtins.exec":
        payload = pickle.dumps(_Evil(exec, f"open({str(marker)!r}, 'w').close()"), protocol=2)
    elif how == "nested":   # a valid-looking batch whose label list hides the payload
        entry["labels"][3] = _Evil(os.system, cmd)
        payload = pickle.dumps(entry, protocol=2)
    elif how == "codec":    # an allowed global called with a codec other than latin-1
        payload = pickle.dumps(entry, protocol=2).replace(b"latin1", b"rot_13")
    else:                   # protocol 5 arrays use a rebuilder the archives never need
        payload = pickle.dumps(entry, protocol=5)
    (folder / "data_batch_1").write_bytes(payload)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path)
    assert "data_batch_1" in one_line(e) and "not a CIFAR batch file" in str(e.value)
    assert not marker.exists()
    # and through the CLI: exit 2, one line on stderr, nothing executed
    assert main(["run", "--models", "ae", "--dataset", "cifar10", "--data-root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data_batch_1" in err and not marker.exists()
