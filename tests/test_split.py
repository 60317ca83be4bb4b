"""Tests of the fixed validation split by file-stem hash."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from humanseg.data.split import is_validation, stem_fraction
from humanseg.errors import HumanSegError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def split_stems(stems: list[str], val_fraction: float = 0.15) -> tuple[list[str], list[str]]:
    """(train, val) stems in input order, by `is_validation` (what every dataset does per file)."""
    return ([s for s in stems if not is_validation(s, val_fraction)],
            [s for s in stems if is_validation(s, val_fraction)])


def test_stem_fraction_matches_sha1_known_answer() -> None:
    """FIPS 180 test vector: SHA-1("abc") starts a9993e364706816a."""
    assert stem_fraction("abc") == pytest.approx(0xA9993E364706816A / 2**64, abs=1e-15)


def test_membership_from_sha1_prefix_worked_out_with_sha1sum() -> None:
    """`printf ccp_0003 | sha1sum` starts 00.., ccp_0013 starts 22.. (0.133), abc a9.. (0.66)."""
    assert is_validation("ccp_0003", 0.01)
    assert is_validation("ccp_0013", 0.15) and not is_validation("ccp_0013", 0.10)
    assert not is_validation("abc", 0.15)


def test_fraction_close_to_requested_on_many_stems() -> None:
    stems = [f"img_{i:05d}" for i in range(20000)]
    _, val = split_stems(stems, 0.15)
    # Binomial(20000, 0.15): sd = 50, so +-250 is five standard deviations.
    assert abs(len(val) - 3000) < 250


def test_split_ignores_order_and_other_files() -> None:
    stems = [f"photo{i}" for i in range(500)]
    train, val = split_stems(stems)
    shuffled = stems[:]
    random.Random(0).shuffle(shuffled)
    train2, val2 = split_stems(shuffled + ["extra_a", "extra_b"])
    assert set(val2) - {"extra_a", "extra_b"} == set(val)
    assert set(train2) - {"extra_a", "extra_b"} == set(train)
    assert set(train).isdisjoint(val) and len(train) + len(val) == 500


def test_larger_fraction_only_adds_stems() -> None:
    stems = [f"s{i}" for i in range(1000)]
    small = set(split_stems(stems, 0.1)[1])
    large = set(split_stems(stems, 0.2)[1])
    assert small < large
    assert split_stems(stems, 0.0)[1] == [] and split_stems(stems, 1.0)[0] == []


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_bad_fraction_is_a_clear_error(fraction: float) -> None:
    with pytest.raises(HumanSegError, match="val_fraction"):
        is_validation("x", fraction)


@pytest.mark.skipif(not (DATA / "ccp").is_dir(), reason="../shared/data/ccp not present")
def test_real_sources_hold_out_about_fifteen_percent() -> None:
    for source in ("ccp", "portraits"):
        stems = [p.stem for p in (DATA / source / "masks").glob("*.png")]
        train, val = split_stems(stems)
        assert 0.10 < len(val) / len(stems) < 0.20, source
        assert set(train).isdisjoint(val)
