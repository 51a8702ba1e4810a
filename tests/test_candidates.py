"""Candidate extraction: refinement before NMS, greedy NMS, cap, multi-part split, offsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepercut.model.candidates import (
    CandidateParams,
    best_per_part,
    cell_centers,
    extract_candidate_tensors,
    extract_candidates,
)
from deepercut.types import Candidates

S = 8  # stride


def blank(b: int = 1, p: int = 2, h: int = 12, w: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(b, p, h, w), torch.zeros(b, p, 2, h, w)


def centre(i: int, j: int) -> tuple[float, float]:
    return j * S + S / 2, i * S + S / 2


def reference(
    probs: np.ndarray,
    locref: np.ndarray,
    pairwise: np.ndarray | None,
    params: CandidateParams,
    stride: int = S,
) -> Candidates:
    """Sequential reference for one image: loops instead of tensors, all cells considered."""
    p, h, w = probs.shape
    split_radius = stride if params.split_radius is None else params.split_radius
    found = []  # (part, score, cell, xy)
    for part in range(p):
        cells = [c for c in range(h * w) if probs[part].flat[c] >= params.min_score]
        cells.sort(key=lambda c: (-probs[part].flat[c], c))
        kept: list[tuple[int, float, int, np.ndarray]] = []
        kept_xy = np.zeros((0, 2))
        for c in cells:
            i, j = divmod(c, w)
            xy = np.array([j, i]) * stride + stride / 2 + locref[part, :, i, j]
            if not np.any(np.hypot(*(kept_xy - xy).T) <= params.nms_radius):
                kept.append((part, float(probs[part, i, j]), c, xy))
                kept_xy = np.vstack([kept_xy, xy])
        found += kept[: params.max_per_part]
    order = sorted(range(len(found)), key=lambda n: (-found[n][1], found[n][0]))
    cell_yx = np.array([divmod(f[2], w) for f in found], float).reshape(-1, 2) * stride
    parts = np.array([f[0] for f in found], int)
    survivors: list[int] = []
    dropped: set[int] = set()
    for n in order:  # greedy: only surviving, stronger candidates of other parts drop n
        near = np.hypot(*(cell_yx[survivors] - cell_yx[n]).T) <= split_radius
        if found[n][1] <= params.split_threshold and np.any(near & (parts[survivors] != parts[n])):
            dropped.add(n)
        else:
            survivors.append(n)
    rows = [found[n] for n in range(len(found)) if n not in dropped]
    offsets = np.zeros((len(rows), p, 2), np.float32)
    for r, (part, _, c, _) in enumerate(rows):
        if pairwise is not None:
            i, j = divmod(c, w)
            offsets[r] = pairwise[part, :, :, i, j]
            offsets[r, part] = 0
    return Candidates(
        xy=np.array([r[3] for r in rows], np.float32).reshape(-1, 2),
        part=np.array([r[0] for r in rows], np.int64),
        score=np.array([r[1] for r in rows], np.float32),
        offsets=offsets,
    )


def test_cell_centers() -> None:
    grid = cell_centers(3, 4, S)
    assert grid.shape == (3, 4, 2) and grid.dtype == torch.float32
    assert grid[2, 3].tolist() == [28.0, 20.0]
    assert grid[0, 0].tolist() == [4.0, 4.0]


def test_refinement_before_nms_merges_peaks() -> None:
    probs, locref = blank()
    probs[0, 0, 5, 5], probs[0, 0, 5, 8] = 0.9, 0.8  # 24 px apart: both survive unrefined
    [c] = extract_candidates(probs, locref, None)
    assert len(c) == 2
    locref[0, 0, 0, 5, 5], locref[0, 0, 0, 5, 8] = 5.0, -5.0  # refined 14 px apart
    [c] = extract_candidates(probs, locref, None)
    assert len(c) == 1
    x, y = centre(5, 5)
    np.testing.assert_allclose(c.xy[0], [x + 5, y])
    assert c.score[0] == pytest.approx(0.9)


def test_refinement_before_nms_separates_peaks() -> None:
    probs, locref = blank()
    probs[0, 0, 5, 5], probs[0, 0, 5, 6] = 0.9, 0.8  # adjacent cells: 8 px apart
    [c] = extract_candidates(probs, locref, None)
    assert len(c) == 1
    locref[0, 0, 0, 5, 5], locref[0, 0, 0, 5, 6] = -6.0, 6.0  # refined 20 px apart
    [c] = extract_candidates(probs, locref, None)
    assert len(c) == 2
    np.testing.assert_allclose(c.xy[:, 0], [centre(5, 5)[0] - 6, centre(5, 6)[0] + 6])


@pytest.mark.parametrize(
    ("second", "cell", "expected"),
    [
        (0.5, (4, 4), 2),  # same cell, both above 0.4: split
        (0.3, (4, 4), 1),  # weak secondary label dropped
        (0.5, (4, 5), 2),  # neighbouring cell counts as the same location
        (0.3, (4, 5), 1),
        (0.3, (5, 5), 2),  # diagonal neighbour (11.3 px) is another location
        (0.3, (4, 7), 2),  # far away: unrelated
    ],
)
def test_multi_part_split(second: float, cell: tuple[int, int], expected: int) -> None:
    probs, locref = blank()
    probs[0, 0, 4, 4] = 0.9
    probs[0, 1, cell[0], cell[1]] = second
    locref[0, 0, :, 4, 4] = torch.tensor([1.0, 2.0])
    locref[0, 1, :, cell[0], cell[1]] = torch.tensor([-3.0, 1.5])
    [c] = extract_candidates(probs, locref, None)
    assert len(c) == expected
    assert c.part[0] == 0 and c.score[0] == pytest.approx(0.9)
    np.testing.assert_allclose(c.xy[0], np.add(centre(4, 4), [1.0, 2.0]))
    if expected == 2:
        assert c.part[1] == 1
        np.testing.assert_allclose(c.xy[1], np.add(centre(*cell), [-3.0, 1.5]))


def test_split_is_greedy() -> None:
    # A dropped secondary label does not drop a third one that only it touches.
    probs, locref = blank(p=3)
    probs[0, 0, 4, 4], probs[0, 1, 4, 5], probs[0, 2, 4, 6] = 0.9, 0.35, 0.3
    [c] = extract_candidates(probs, locref, None)
    assert c.part.tolist() == [0, 2]


def test_cap_per_part() -> None:
    probs, locref = blank(p=1, h=20, w=24)
    scores = np.linspace(0.3, 0.99, 30)
    rng = np.random.default_rng(0)
    rng.shuffle(scores)
    for n, s in enumerate(scores):
        probs[0, 0, 2 + 4 * (n // 6), 2 + 4 * (n % 6)] = float(s)
    [c] = extract_candidates(probs, locref, None)
    assert len(c) == 20
    np.testing.assert_allclose(c.score, np.sort(scores)[::-1][:20], rtol=1e-6)
    [c] = extract_candidates(probs, locref, None, params=CandidateParams(max_per_part=5))
    assert len(c) == 5


def test_min_score() -> None:
    probs, locref = blank()
    probs[0, 0, 2, 2], probs[0, 0, 8, 8], probs[0, 1, 2, 12] = 0.19, 0.2, 0.25
    [c] = extract_candidates(probs, locref, None)
    assert c.part.tolist() == [0, 1]
    np.testing.assert_allclose(c.score, [0.2, 0.25])
    [c] = extract_candidates(probs, locref, None, params=CandidateParams(min_score=0.22))
    assert c.part.tolist() == [1]


def test_offsets_read_at_candidate_cell() -> None:
    b, p, h, w = 1, 3, 6, 7
    probs, locref = blank(b, p, h, w)
    probs[0, 1, 2, 3], probs[0, 2, 5, 0] = 0.8, 0.7
    # Every entry distinct, encoding (p, q, axis, i, j).
    code = torch.arange(p * p * 2 * h * w, dtype=torch.float32) + 1
    pairwise = code.reshape(b, p, p, 2, h, w)
    [c] = extract_candidates(probs, locref, pairwise)
    assert c.part.tolist() == [1, 2]
    for n, (part, i, j) in enumerate([(1, 2, 3), (2, 5, 0)]):
        expected = pairwise[0, part, :, :, i, j].clone()
        expected[part] = 0
        np.testing.assert_array_equal(c.offsets[n], expected.numpy())
    [c] = extract_candidates(probs, locref, None)
    assert c.offsets.shape == (2, p, 2) and not c.offsets.any()


def test_batch_items_are_independent() -> None:
    probs, locref = blank(b=2)
    probs[0, 0, 1, 1] = 0.9
    probs[1, 1, 3, 3], probs[1, 1, 8, 8] = 0.6, 0.7
    locref[1, 1, :, 8, 8] = torch.tensor([2.0, -1.0])
    first, second = extract_candidates(probs, locref, None)
    assert first.part.tolist() == [0]
    np.testing.assert_allclose(first.xy, [centre(1, 1)])
    assert second.part.tolist() == [1, 1]
    np.testing.assert_allclose(second.score, [0.7, 0.6])
    np.testing.assert_allclose(second.xy, [np.add(centre(8, 8), [2, -1]), centre(3, 3)])


def test_empty_maps() -> None:
    probs, locref = blank(b=2, p=4)
    cands = extract_candidates(probs, locref, None)
    assert len(cands) == 2
    for c in cands:
        assert c.xy.shape == (0, 2) and c.xy.dtype == np.float32
        assert c.part.shape == (0,) and c.part.dtype == np.int64
        assert c.score.shape == (0,) and c.score.dtype == np.float32
        assert c.offsets.shape == (0, 4, 2) and c.offsets.dtype == np.float32


def random_maps(
    rng: np.random.Generator, b: int, p: int, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    probs = torch.from_numpy(rng.random((b, p, h, w), np.float32) ** 3)
    locref = torch.from_numpy(rng.normal(0, 6, (b, p, 2, h, w)).astype(np.float32))
    pairwise = torch.from_numpy(rng.normal(0, 30, (b, p, p, 2, h, w)).astype(np.float32))
    return probs, locref, pairwise


def assert_same(got: Candidates, want: Candidates) -> None:
    np.testing.assert_array_equal(got.part, want.part)
    np.testing.assert_allclose(got.score, want.score, rtol=1e-6)
    np.testing.assert_allclose(got.xy, want.xy, atol=1e-4)
    np.testing.assert_allclose(got.offsets, want.offsets, atol=1e-5)


@pytest.mark.parametrize(
    ("params", "instances"),
    [
        # NMS alone: no cap binds, split disabled (threshold below min_score).
        (CandidateParams(min_score=0.1, max_per_part=200, split_threshold=0.0, top_k=200), 50),
        # NMS and split (drops about one in six candidates on these maps).
        (CandidateParams(min_score=0.1, max_per_part=200, split_threshold=0.5, top_k=200), 20),
        # The full pipeline: NMS, a binding cap and split.
        (CandidateParams(min_score=0.1, max_per_part=15, split_threshold=0.5, top_k=200), 20),
    ],
)
def test_matches_sequential_reference(params: CandidateParams, instances: int) -> None:
    rng = np.random.default_rng(1)
    probs, locref, pairwise = random_maps(rng, instances, 3, 10, 12)
    got = extract_candidates(probs, locref, pairwise, params=params)
    for n, c in enumerate(got):
        want = reference(probs[n].numpy(), locref[n].numpy(), pairwise[n].numpy(), params)
        assert_same(c, want)
        # Sorted by part, then by descending score.
        assert np.all(np.diff(c.part) >= 0)
        same = np.diff(c.part) == 0
        assert np.all(np.diff(c.score)[same] <= 0)


def test_top_k_bound_keeps_result_when_enough_survive() -> None:
    # Greedy NMS decides from higher scores only: a small top_k changes nothing as long as the
    # top-k cells already hold max_per_part survivors.
    rng = np.random.default_rng(2)
    probs, locref, pairwise = random_maps(rng, 4, 2, 16, 16)
    full = CandidateParams(max_per_part=3, top_k=256)
    bounded = CandidateParams(max_per_part=3, top_k=40)
    for a, b in zip(
        extract_candidates(probs, locref, pairwise, params=full),
        extract_candidates(probs, locref, pairwise, params=bounded),
        strict=True,
    ):
        assert_same(a, b)


def test_ties_break_by_cell_index() -> None:
    probs, locref = blank(p=1)
    probs[0, 0, 3, 4], probs[0, 0, 3, 5] = 0.7, 0.7
    [c] = extract_candidates(probs, locref, None)
    np.testing.assert_allclose(c.xy, [centre(3, 4)])


def test_padded_tensors() -> None:
    probs, locref = blank(b=2, p=3)
    probs[1, 2, 4, 4] = 0.9
    t = extract_candidate_tensors(probs, locref, None)
    k = 3 * CandidateParams().max_per_part
    assert t.xy.shape == (2, k, 2) and t.offsets.shape == (2, k, 3, 2)
    assert t.valid.sum().item() == 1 and t.valid[1].any()
    assert t.part[1, t.valid[1]].tolist() == [2]


def test_best_per_part() -> None:
    probs, locref = blank(b=2)
    probs[0, 0, 3, 4], probs[0, 0, 6, 6] = 0.8, 0.5
    probs[1, 1, 7, 2] = 0.6
    locref[0, 0, :, 3, 4] = torch.tensor([1.5, -2.0])
    best = best_per_part(probs, locref, S)
    assert best.shape == (2, 2, 3)
    np.testing.assert_allclose(best[0, 0], [*np.add(centre(3, 4), [1.5, -2.0]), 0.8], rtol=1e-6)
    np.testing.assert_allclose(best[1, 1], [*centre(7, 2), 0.6], rtol=1e-6)


def test_rejects_bad_shapes() -> None:
    probs, locref = blank()
    with pytest.raises(ValueError, match="locref"):
        extract_candidates(probs, locref[:, :1], None)
    with pytest.raises(ValueError, match="pairwise"):
        extract_candidates(probs, locref, torch.zeros(1, 2, 2, 2, 3, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(3)
    probs, locref, pairwise = random_maps(rng, 3, 4, 20, 24)
    cpu = extract_candidates(probs, locref, pairwise)
    gpu = extract_candidates(probs.cuda(), locref.cuda(), pairwise.cuda())
    for a, b in zip(cpu, gpu, strict=True):
        assert_same(b, a)
