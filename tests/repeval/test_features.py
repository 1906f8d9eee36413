"""The feature cache (repeval/engine/features.py): an altered cache entry is recomputed, never read."""
from repeval.cli import main
from repeval.store.storage import atomic_torch_save, load_checkpoint
from tests.helpers import read_records


def test_altered_feature_cache_is_recomputed(tmp_path, tiny_run, capsys):
    args = tiny_run(models="random")
    assert main(args) == 0
    before = {k: r["metrics"] for k, r in read_records(tmp_path / "results").items()}
    entry = next((tmp_path / "work/features").glob("*-train.pt"))
    obj = load_checkpoint(entry)
    obj["payload"]["conv"] = obj["payload"]["conv"] * 0.1          # still loads, but altered
    atomic_torch_save(entry, obj)
    assert main(args + ["--force"]) == 0
    after = read_records(tmp_path / "results")
    assert {k: r["metrics"] for k, r in after.items()} == before
    assert not any(r["timing_s"]["features_cached"] for r in after.values())
