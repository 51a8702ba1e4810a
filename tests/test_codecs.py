"""Codecs: what a training target encodes, the network's decoding gives back in pixels."""

from __future__ import annotations

import torch

from deepercut.model.codecs import (
    LOCREF_STD,
    decode_locref,
    decode_offsets,
    encode_locref,
    encode_offsets,
    expand_pairwise,
    offset_statistics,
    other_parts,
)
from deepercut.model.net import DeeperCut, DetectorConfig, DetectorOutput

P, H, W = 4, 3, 5


def test_locref_round_trip_and_scale() -> None:
    offsets = torch.randn(2, P, 2, H, W, generator=torch.Generator().manual_seed(0)) * 9
    target = encode_locref(offsets)
    torch.testing.assert_close(target, offsets / 7.2801)  # pose-tensorflow's normalisation
    raw = target.reshape(2, 2 * P, H, W)  # the head's channel layout: (part, x/y)
    torch.testing.assert_close(decode_locref(raw), offsets)
    assert LOCREF_STD == 7.2801


def test_pairwise_offsets_round_trip_through_the_network_decoder() -> None:
    gen = torch.Generator().manual_seed(1)
    vectors = torch.randn(P, P - 1, 2, H, W, generator=gen) * 40
    mean = torch.randn(P, P - 1, 2, generator=gen) * 20
    std = torch.rand(P, P - 1, 2, generator=gen) * 10 + 1
    raw = encode_offsets(vectors, mean, std).reshape(1, -1, H, W)
    decoded = decode_offsets(raw, mean, std)  # [1, P, P, 2, H, W], zero for q = p
    torch.testing.assert_close(decoded, expand_pairwise(vectors[None]), rtol=1e-5, atol=1e-4)
    assert decoded[0, 2, 2].abs().max() == 0
    # The network decodes its maps with the same codecs and its own statistics.
    net = DeeperCut(DetectorConfig(arch="resnet18", num_parts=P, width=8, head_channels=8))
    net.pairwise_mean, net.pairwise_std = mean, std
    scmap = torch.zeros(1, P, H, W)
    out = DetectorOutput(scmap, encode_locref(torch.ones(1, P, 2, H, W)).view(1, -1, H, W), raw,
                         torch.zeros(1, P, 1, 2))  # fmt: skip
    maps = net.decode(out)
    torch.testing.assert_close(maps.pairwise, decoded)
    torch.testing.assert_close(maps.locref, torch.ones(1, P, 2, H, W))


def test_offset_statistics_ignore_unannotated_parts() -> None:
    kp = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 20.0]], [[5.0, 5.0], [25.0, 5.0], [0, 0]]])
    annotated = torch.tensor([[True, True, True], [True, True, False]])
    mean, std = offset_statistics([kp], [annotated], 3)
    q = other_parts(3)[0].tolist().index(1)  # part 0 → part 1: (10, 0) and (20, 0)
    torch.testing.assert_close(mean[0, q], torch.tensor([15.0, 0.0]))
    torch.testing.assert_close(std[0, q], torch.tensor([5.0, 1.0]))  # std floored at 1 px
    r = other_parts(3)[0].tolist().index(2)  # part 0 → part 2: one annotated pair, (0, 20)
    torch.testing.assert_close(mean[0, r], torch.tensor([0.0, 20.0]))
