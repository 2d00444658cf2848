import pytest

from batchmix.core.errors import BatchmixError
from batchmix.mixing.ratio import Ratio, complement


def test_complement_fills_cross():
    assert complement(0.2, 0.0) == 0.8
    assert complement(0.2, 0.3) == 0.5  # not 0.49999999999999994
    assert complement("x", 0.1) == "?"


@pytest.mark.parametrize(
    "cfg, expected",
    [
        ({"mono": 0.2, "cross": 0.8, "multi": 0.0}, (0.2, 0.8, 0.0)),
        ({"mono": 0.2, "cross": 0.5, "multi": 0.3}, (0.2, 0.5, 0.3)),
        ({"mono": 1, "cross": 0, "multi": 0}, (1.0, 0.0, 0.0)),
        ({"mono": 0.1, "cross": 0.2, "multi": 0.7}, (0.1, 0.2, 0.7)),
    ],
)
def test_valid_ratios(cfg, expected):
    r = Ratio.from_mapping(cfg)
    assert (r.mono, r.cross, r.multi) == pytest.approx(expected)


@pytest.mark.parametrize(
    "cfg, fragments",
    [
        ({"mono": -0.1, "cross": 1.1, "multi": 0.0}, ["mono=-0.1", "negative", ">= 0"]),
        ({"mono": 0.8, "cross": complement(0.8, 0.5), "multi": 0.5}, ["cross=-0.3", "mono + multi must not exceed 1"]),
        ({"mono": 0.5, "cross": 0.6, "multi": 0.0}, ["sums to 1.1", "sum to 1"]),
        ({"mono": "abc", "cross": 0.5, "multi": 0.0}, ["ratio.mono='abc'", "not a number"]),
        ({"mono": float("nan"), "cross": 0.5, "multi": 0.0}, ["ratio.mono", "finite"]),
        ({"mono": 0.5, "cross": 0.5, "multi": 0.0, "bilingual": 0.1}, ["bilingual", "mono, cross, multi"]),
    ],
)
def test_invalid_ratios_name_value_and_fix(cfg, fragments):
    with pytest.raises(BatchmixError) as err:
        Ratio.from_mapping(cfg)
    msg = str(err.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 59, 100, 101, 997])
@pytest.mark.parametrize(
    "shares", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.2, 0.5, 0.3), (1 / 3, 1 / 3, 1 / 3), (0.29, 0.71, 0), (0.05, 0.9, 0.05)]
)
def test_counts_are_largest_remainder(n, shares):
    r = Ratio(*shares)
    counts = r.counts(n)
    assert sum(counts.values()) == n
    for k, share in zip(("mono", "cross", "multi"), shares):
        # Largest remainder: each count is the floor or the ceiling of its exact quota.
        assert abs(counts[k] - share * n) < 1 + 1e-9
        if share == 0:
            assert counts[k] == 0


def test_counts_exact_examples():
    assert Ratio(0.29, 0.71, 0).counts(100) == {"mono": 29, "cross": 71, "multi": 0}
    assert Ratio(1 / 3, 1 / 3, 1 / 3).counts(10) == {"mono": 4, "cross": 3, "multi": 3}
    assert Ratio(0.5, 0.5, 0).counts(3) == {"mono": 2, "cross": 1, "multi": 0}
    assert Ratio(0.2, 0.5, 0.3).counts(7) == {"mono": 1, "cross": 4, "multi": 2}


def test_complement_of_a_node_sums_every_other_share():
    """`${bm_complement:cross}`: OmegaConf passes the ratio node, so a share added later counts too."""
    from omegaconf import OmegaConf

    node = {"mono": 0.2, "multi": 0.3, "cross": "?", "pivot": 0.1}
    assert complement("cross", _parent_=node) == 0.4
    assert complement("cross", _parent_={"mono": "lots", "cross": "?"}) == "?"
    if not OmegaConf.has_resolver("bm_complement_test"):
        OmegaConf.register_new_resolver("bm_complement_test", complement)
    cfg = OmegaConf.create({"ratio": {"mono": 0.1, "multi": 0.2, "cross": "${bm_complement_test:cross}"}})
    cfg.ratio.pivot = 0.3
    assert OmegaConf.to_container(cfg.ratio, resolve=True)["cross"] == 0.4


def test_registry_order_and_a_ratio_over_it():
    from batchmix.mixing.batch_types import BatchType, batch_type_names, get_batch_type, register, registered, unregister

    assert batch_type_names() == ("mono", "cross", "multi")
    assert get_batch_type("cross").label == "cross-lingual"
    extra = BatchType("extra", lambda ctx: [], "extra", "black")
    old = Ratio(0.5, 0.5)  # made before the type exists: no share for it
    with registered(extra):
        assert batch_type_names() == ("mono", "cross", "multi", "extra")
        with pytest.raises(BatchmixError, match="already registered"):
            register(extra)
        r = Ratio.from_mapping({"mono": 0.5, "extra": 0.5})
        assert r["extra"] == r.extra == 0.5 and r["cross"] == 0.0 and old["extra"] == 0.0
        assert r.label() == "0.5/0/0/0.5" and r.counts(3) == {"mono": 2, "cross": 0, "multi": 0, "extra": 1}
        assert r == Ratio(mono=0.5, extra=0.5) and r != old
        with pytest.raises(BatchmixError, match=r"only mono, cross, multi, extra"):
            Ratio.from_mapping({"bilingual": 1.0})
    assert batch_type_names() == ("mono", "cross", "multi")
    for bad in ("all", "Pivot", "two words"):
        with pytest.raises(BatchmixError, match="not usable"):
            register(BatchType(bad, lambda ctx: [], bad, "black"))
    with pytest.raises(BatchmixError, match="built in"):
        unregister("mono")


def test_ratio_survives_pickling():
    import pickle

    r = Ratio(0.2, 0.5, 0.3)
    assert pickle.loads(pickle.dumps(r)) == r and pickle.loads(pickle.dumps(r)).as_dict() == r.as_dict()
    with pytest.raises(AttributeError):
        r.mono = 1.0
