"""Input signatures: a stamped patch recurs as one block component; clean inputs rarely collide."""

from __future__ import annotations

import numpy as np
import pytest

from services.telemetry.domain import SignatureSpec, block_hashes, decode, encode, input_signatures

pytestmark = pytest.mark.unit


def _images(n: int, seed: int, shape: tuple[int, ...] = (3, 32, 32)) -> np.ndarray:
    """Smooth-ish random images: low-resolution noise upsampled, plus pixel noise."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    coarse = rng.random((n, c, h // 4, w // 4))
    return np.clip(coarse.repeat(4, axis=2).repeat(4, axis=3) + rng.normal(0, 0.05, (n, c, h, w)), 0, 1)


def test_a_patch_filling_one_block_gives_the_same_component_on_every_input() -> None:
    x = _images(500, seed=1)
    x[:, :, 24:, 24:] = np.where((np.indices((8, 8)).sum(axis=0) % 2) == 0, 1.0, 0.0)  # checkerboard
    hashes = block_hashes(x)
    assert len(set(hashes[:, 15].tolist())) == 1
    assert len(set(hashes[:, 0].tolist())) > 490


def test_clean_inputs_rarely_share_a_block_component() -> None:
    hashes = block_hashes(_images(2000, seed=2))
    shared = 0
    for block in range(16):
        column = hashes[:, block]
        _, counts = np.unique(column[column != 0], return_counts=True)  # 0 = no pattern, not counted
        assert counts.max() <= 3, f"block {block} collided {counts.max()} times"
        shared += int(counts[counts > 1].sum())
    assert shared / hashes.size < 0.002


def test_a_patch_smaller_than_its_block_does_not_recur_which_is_a_documented_limit() -> None:
    x = _images(500, seed=3)
    x[:, :, 28:, 28:] = 1.0  # 4x4 patch inside an 8x8 block
    coarse = block_hashes(x)
    fine = block_hashes(x, SignatureSpec(grid=(8, 8)))
    assert len(set(coarse[:, 15].tolist())) > 100
    assert len(set(fine[:, 63].tolist())) == 1  # a grid matched to the trigger size recovers it


def test_flat_inputs_are_cut_into_segments() -> None:
    rng = np.random.default_rng(4)
    x = rng.random((300, 256))
    x[:, -16:] = 1.0
    hashes = block_hashes(x)
    assert hashes.shape == (300, 16)
    assert len(set(hashes[:, 15].tolist())) == 1 and len(set(hashes[:, 3].tolist())) > 250


def test_signatures_are_64_characters_and_decode_back_to_the_block_hashes() -> None:
    x = _images(50, seed=5)
    sigs = input_signatures(x)
    assert {len(s) for s in sigs} == {64}
    hashes, marks = decode(sigs)
    assert np.array_equal(hashes, block_hashes(x)) and marks == {}


def test_trigger_marks_and_malformed_signatures_decode_safely() -> None:
    hashes = block_hashes(_images(3, seed=6))
    sigs = encode(hashes, triggers=["", "nc-7", ""])
    sigs.append("not a signature")
    decoded, marks = decode(sigs)
    assert marks == {1: "nc-7"}
    assert np.array_equal(decoded[:3], hashes) and not decoded[3].any()


def test_an_all_mid_level_block_carries_no_pattern() -> None:
    x = np.full((2, 1, 16, 16), 0.5)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0
    hashes = block_hashes(x)
    assert hashes[0, 0] != 0 and not hashes[:, 1:].any()
