"""`--plugin FILE` (repeval/plugin/loader.py): a user's encoder with its own taps, one with wrong tap shapes, a
missing file."""
from repeval.cli import main
from tests.helpers import read_records


PLUGIN = '''
from collections import OrderedDict
import torch
from torch import nn
from repeval import register_encoder

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)
        self.lin = nn.Linear(4 * 16 * 16, 8)
    def forward(self, x):
        h = torch.relu(self.conv(x))
        return OrderedDict(pixels=h, code=self.lin(h.flatten(1)))

class Broken(nn.Module):
    def forward(self, x):
        return OrderedDict(bad=torch.zeros(3, 5))

register_encoder("tiny-{tag}", Tiny, display="Tiny user encoder")
register_encoder("broken-{tag}", Broken)
'''


def test_plugin_encoder_with_own_taps(tmp_path, tiny_run, capsys):
    plugin = tmp_path / "plug.py"
    plugin.write_text(PLUGIN.format(tag="a"))
    assert main(["--plugin", str(plugin)] + tiny_run(models="tiny-a")) == 0
    recs = read_records(tmp_path / "results")
    assert sorted(recs) == [f"digits/records/tiny-a/mlp/{t}-seed0-epoch0.json" for t in ("code", "pixels")]
    assert all(r["display"] == "Tiny user encoder" and r["config"]["encoder"]["kind"] == "frozen"
               and r["config"]["encoder"]["code"] for r in recs.values())
    assert main(["--plugin", str(plugin), "list"]) == 0
    assert "tiny-a" in capsys.readouterr().out


def test_plugin_encoder_with_wrong_shapes_one_line_error(tmp_path, tiny_run, capsys):
    plugin = tmp_path / "plug_b.py"
    plugin.write_text(PLUGIN.format(tag="b"))
    assert main(["--plugin", str(plugin)] + tiny_run(models="broken-b")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "encoder 'broken-b' tap 'bad' has shape (3, 5)" in err


def test_missing_plugin_file(tmp_path, capsys):
    assert main(["--plugin", str(tmp_path / "nope.py"), "list"]) == 2
    assert "plugin file not found" in capsys.readouterr().err
