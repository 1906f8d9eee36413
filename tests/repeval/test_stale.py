"""Cells computed by an older family or protocol version are flagged § (repeval.report.tables.build.stale)."""
from repeval.registry import MODELS, PROTOCOLS
from repeval.report.tables.build import TABLE1, build_table, stale
from repeval.report.tables.render import footnotes, render_markdown


def _rec(seed: int, protocol_version: int, family_version: int) -> dict:
    return {"model": "ae", "display": "AE", "dataset": "d", "protocol": "mlp", "tap": "conv", "seed": seed,
            "epoch": 1, "success": True, "metrics": {"accuracy": 60.0 + seed},
            "config": {"protocol_version": protocol_version,
                       "encoder": {"kind": "trained", "version": family_version, "train": {"seed": 0},
                                   "config": {}}}}


def test_older_versions_are_stale_and_flagged():
    pv, fv = PROTOCOLS.get("mlp").version, MODELS.get("ae").build.family.version
    assert not stale(_rec(0, pv, fv))
    assert stale(_rec(0, pv - 1, fv)) and stale(_rec(0, pv, fv + 1))
    current = build_table([_rec(s, pv, fv) for s in range(3)], TABLE1, "d", models=["ae"])
    old = [_rec(0, pv - 1, fv)] + [_rec(s, pv, fv) for s in (1, 2)]
    df = build_table(old, TABLE1, "d", models=["ae"])
    assert not current["stale"].any() and df.set_index("column").loc["conv", "stale"]
    md = render_markdown(df, TABLE1, footnotes(df, old, TABLE1))
    assert "61.00 ± 1.00§" in md and "§ = stale" in md
    assert "§" not in render_markdown(current, TABLE1, footnotes(current, [], TABLE1))


def test_a_row_from_two_sets_of_weights_is_flagged_mixed():
    """An encoder retrained after its checkpoint was lost, then evaluated by one protocol only: the
    row's records of one (training seed, epoch) name two encoder hashes, and every cell of the row says so."""
    pv, fv = PROTOCOLS.get("mlp").version, MODELS.get("ae").build.family.version
    same = [{**_rec(s, pv, fv), "encoder_hash": "aaaa"} for s in range(3)]
    knn = {**_rec(0, PROTOCOLS.get("knn").version, fv), "protocol": "knn", "encoder_hash": "aaaa"}
    clean = build_table(same + [knn], TABLE1, "d", models=["ae"])
    assert not clean["mixed_encoders"].any()
    mixed = same + [{**knn, "encoder_hash": "bbbb"}]
    df = build_table(mixed, TABLE1, "d", models=["ae"])
    assert df.set_index("column").loc["conv", "mixed_encoders"]     # the mlp cell, though its own records agree
    md = render_markdown(df, TABLE1, footnotes(df, mixed, TABLE1))
    assert "61.00 ± 1.00¶" in md and "¶ = mixed encoders" in md
    # another epoch or training seed is another encoder: not mixed
    other = same + [{**knn, "encoder_hash": "bbbb", "epoch": 2}]
    assert not build_table(other, TABLE1, "d", models=["ae"])["mixed_encoders"].any()
