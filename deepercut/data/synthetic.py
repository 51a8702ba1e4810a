"""Synthetic multi-person images and videos with exact ground truth (MPII14 skeleton).

People are articulated 3-D stick figures (joint angles within human limits, varied body
proportions, turned up to ~75° towards the side), projected orthographically and rendered as
shaded capsules (limbs), a rounded quadrilateral (torso) and an ellipse (head) over a textured
background. Persons are painted back to front, so they occlude each other; a label map records
which person owns each pixel, and a keypoint counts as visible when it lies inside the image and
its pixel belongs to its own person.

Conventions: keypoints are ``(x, y)`` in image pixels with pixel ``(row i, column j)`` centred at
``(x=j, y=i)``; parts follow :data:`deepercut.skeleton.MPII14` (the person's right side appears
on the image left when they face the camera). A person's *height* is their standing height in
pixels (head top to ankles), which also sets limb thickness.

Truth JSON (``write_video``, ``deepercut synth images``)::

    {"format": "deepercut.truth", "version": 1,
     "skeleton": MPII14.to_dict(),
     "image_size": [W, H], "fps": 25.0,
     "frames": [{"i": 0, "t": 0.0,
                 "people": [{"id": 3, "height": 212.5,
                             "keypoints": [[x, y, v], ...]}]}]}   # 14 rows per person

``v`` is 1 for a visible keypoint and 0 for one outside the image or hidden behind another
person; coordinates are kept for both. For an image set each image is one frame (``t`` is 0,
``fps`` is null, and the frame has ``"file": "img00000.png"``). :func:`load_truth` reads it back
with numpy arrays per frame.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from deepercut.skeleton import MPII14, Skeleton

__all__ = [
    "Appearance",
    "SyntheticFrame",
    "SyntheticSample",
    "generate_image",
    "generate_video",
    "load_truth",
    "render_people",
    "sample_appearance",
    "sample_people",
    "textured_background",
    "truth_document",
    "truth_frame",
    "visibility",
    "write_png",
    "write_video",
]

# MPII14 part indices.
R_ANK, R_KNE, R_HIP, L_HIP, L_KNE, L_ANK = 0, 1, 2, 3, 4, 5
R_WRI, R_ELB, R_SHO, L_SHO, L_ELB, L_WRI = 6, 7, 8, 9, 10, 11
NECK, HEAD = 12, 13
NUM_PARTS = 14

_DEG = math.pi / 180.0

# Body proportions as fractions of standing height (head top to ankles ≈ 0.97 + foot).
_PROPORTIONS = {
    "head": 0.15,  # head top → neck keypoint
    "torso": 0.33,  # neck → pelvis centre
    "shoulder_drop": 0.04,  # shoulders below the neck
    "shoulder_half": 0.11,
    "hip_half": 0.075,
    "upper_arm": 0.175,
    "forearm": 0.15,
    "thigh": 0.245,
    "shin": 0.245,
}

# Shape radii as fractions of height (scaled per person by Appearance.build).
_RADII = {
    "thigh": 0.048,
    "shin": 0.036,
    "foot": 0.024,
    "upper_arm": 0.032,
    "forearm": 0.026,
    "hand": 0.028,
    "neck": 0.028,
    "torso": 0.035,
    "head_x": 0.06,
    "head_y": 0.073,
}

_SKIN_TONES = np.array(
    [
        (255, 224, 196),
        (241, 194, 167),
        (234, 192, 134),
        (224, 172, 105),
        (198, 134, 66),
        (141, 85, 36),
        (92, 56, 33),
    ],
    np.float32,
)
_HAIR = np.array(
    [(20, 16, 14), (60, 40, 25), (110, 75, 40), (200, 170, 110), (150, 150, 150), (90, 30, 20)],
    np.float32,
)
_MIN_RADIUS = 1.2  # px; keeps every keypoint pixel covered by its own limb


# ----------------------------------------------------------------------------- people / poses


@dataclass
class _People:
    keypoints: np.ndarray  # float32 [M,14,2]
    heights: np.ndarray  # float32 [M]
    depth: np.ndarray  # float32 [M,14] towards the camera, px
    facing: np.ndarray  # float32 [M] sin(yaw): +1 faces image right, −1 left


def _sample_body(rng: np.random.Generator) -> dict[str, float]:
    """Per-person segment lengths (fractions of height), jittered around the mean."""
    body = {k: v * float(rng.uniform(0.92, 1.08)) for k, v in _PROPORTIONS.items()}
    body["shoulder_half"] *= float(rng.uniform(0.9, 1.12))
    return body


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float64)


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)


def _limb(
    flex: float, abduct: float, bend: float, side: float, bend_dir: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Directions of the proximal and distal segments of a limb hanging down from its root.

    Body frame: x = the person's left, y = down, z = forward (towards the camera at yaw 0).
    ``flex`` swings the limb forward, ``abduct`` outwards (``side`` = −1 right, +1 left),
    ``bend`` (elbow/knee) turns the distal segment towards ``bend_dir``.
    """
    ca = math.cos(abduct)
    d = np.array([side * math.sin(abduct), ca * math.cos(flex), ca * math.sin(flex)])
    b = bend_dir - (bend_dir @ d) * d
    n = np.linalg.norm(b)
    if n < 1e-6:  # bend direction parallel to the limb: any perpendicular will do
        b = np.cross(d, [1.0, 0.0, 0.0])
        n = np.linalg.norm(b)
    b /= n
    return d, math.cos(bend) * d + math.sin(bend) * b


def _pose_joints(body: dict[str, float], angles: dict[str, float]) -> np.ndarray:
    """3-D joints [14,3] in body units (height 1), pelvis centre at the origin."""
    j = np.zeros((NUM_PARTS, 3))
    trunk = _rot_x(-angles["lean_fwd"]) @ _rot_z(angles["lean_side"])
    up = trunk @ np.array([0.0, -1.0, 0.0])
    lateral = trunk @ np.array([1.0, 0.0, 0.0])
    j[NECK] = up * body["torso"]
    head_dir = _rot_x(-angles["head_fwd"]) @ _rot_z(angles["head_side"]) @ up
    j[HEAD] = j[NECK] + head_dir * body["head"]
    for side, sho, elb, wri, key in ((-1, R_SHO, R_ELB, R_WRI, "r"), (1, L_SHO, L_ELB, L_WRI, "l")):
        j[sho] = j[NECK] + lateral * side * body["shoulder_half"] - up * body["shoulder_drop"]
        # Elbows bend forward-and-inwards; the mix is per arm so forearms may cross the chest.
        psi = angles[f"{key}_elbow_dir"]
        bend_dir = np.array([-side * math.sin(psi), 0.0, math.cos(psi)])
        upper, fore = _limb(
            angles[f"{key}_sh_flex"],
            angles[f"{key}_sh_abd"],
            angles[f"{key}_elbow"],
            side,
            bend_dir,
        )
        j[elb] = j[sho] + trunk @ upper * body["upper_arm"]
        j[wri] = j[elb] + trunk @ fore * body["forearm"]
    for side, hip, kne, ank, key in ((-1, R_HIP, R_KNE, R_ANK, "r"), (1, L_HIP, L_KNE, L_ANK, "l")):
        j[hip] = np.array([side * body["hip_half"], 0.0, 0.0])
        thigh, shin = _limb(
            angles[f"{key}_hip_flex"],
            angles[f"{key}_hip_abd"],
            angles[f"{key}_knee"],
            side,
            np.array([0.0, 0.0, -1.0]),  # knees only bend backwards
        )
        j[kne] = j[hip] + thigh * body["thigh"]
        j[ank] = j[kne] + shin * body["shin"]
    return j


def _neutral_angles() -> dict[str, float]:
    a = dict.fromkeys(("lean_fwd", "lean_side", "head_fwd", "head_side"), 0.0)
    for k in ("r", "l"):
        a.update(
            {
                f"{k}_sh_flex": 0.0,
                f"{k}_sh_abd": 8 * _DEG,
                f"{k}_elbow": 10 * _DEG,
                f"{k}_elbow_dir": 0.3,
                f"{k}_hip_flex": 0.0,
                f"{k}_hip_abd": 4 * _DEG,
                f"{k}_knee": 3 * _DEG,
            }
        )
    return a


def _sample_arm(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(shoulder flexion, abduction, elbow flexion, elbow direction) for one arm."""
    u = rng.uniform
    style = rng.choice(4, p=[0.4, 0.25, 0.2, 0.15])
    if style == 0:  # relaxed, hanging
        return u(-25, 35) * _DEG, u(2, 30) * _DEG, u(0, 70) * _DEG, u(-0.3, 1.0)
    if style == 1:  # raised: sideways or overhead
        return u(-20, 120) * _DEG, u(60, 170) * _DEG, u(0, 120) * _DEG, u(-0.5, 1.2)
    if style == 2:  # forward / across the chest
        return u(20, 100) * _DEG, u(-30, 20) * _DEG, u(40, 135) * _DEG, u(0.8, 1.6)
    return u(-50, 180) * _DEG, u(-30, 170) * _DEG, u(0, 150) * _DEG, u(-0.5, 1.6)


def _sample_angles(rng: np.random.Generator) -> dict[str, float]:
    """A random static pose within joint limits (standing, stepping, crouching, reaching...)."""
    u = rng.uniform
    a = _neutral_angles()
    a["lean_fwd"] = u(-8, 20) * _DEG
    a["lean_side"] = u(-10, 10) * _DEG
    a["head_fwd"] = u(-15, 25) * _DEG
    a["head_side"] = u(-15, 15) * _DEG
    for k in ("r", "l"):
        flex, abd, elbow, edir = _sample_arm(rng)
        a.update({f"{k}_sh_flex": flex, f"{k}_sh_abd": abd, f"{k}_elbow": elbow})
        a[f"{k}_elbow_dir"] = edir
    legs = rng.choice(4, p=[0.4, 0.3, 0.15, 0.15])
    if legs == 0:  # standing
        for k in ("r", "l"):
            a[f"{k}_hip_flex"] = u(-8, 12) * _DEG
            a[f"{k}_hip_abd"] = u(0, 14) * _DEG
            a[f"{k}_knee"] = u(0, 20) * _DEG
    elif legs == 1:  # stepping: one leg forward, one back
        swing = u(10, 35) * _DEG
        sign = rng.choice([-1.0, 1.0])
        a["r_hip_flex"], a["l_hip_flex"] = sign * swing, -sign * swing
        for k in ("r", "l"):
            a[f"{k}_hip_abd"] = u(0, 8) * _DEG
            a[f"{k}_knee"] = u(0, 50) * _DEG
    elif legs == 2:  # crouching / squatting
        for k in ("r", "l"):
            a[f"{k}_hip_flex"] = u(40, 105) * _DEG
            a[f"{k}_hip_abd"] = u(5, 35) * _DEG
            a[f"{k}_knee"] = a[f"{k}_hip_flex"] + u(0, 40) * _DEG
        a["lean_fwd"] = u(10, 40) * _DEG
    else:  # anything within limits (kicks, wide stances)
        for k in ("r", "l"):
            a[f"{k}_hip_flex"] = u(-30, 100) * _DEG
            a[f"{k}_hip_abd"] = u(-10, 50) * _DEG
            a[f"{k}_knee"] = u(0, 130) * _DEG
    return a


def _project(
    joints: np.ndarray, yaw: float, scale: float, pelvis_xy: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic view of body-frame joints turned by ``yaw`` (+ faces image right)."""
    c, s = math.cos(yaw), math.sin(yaw)
    x = joints[:, 0] * c + joints[:, 2] * s
    z = -joints[:, 0] * s + joints[:, 2] * c
    kp = np.stack([pelvis_xy[0] + scale * x, pelvis_xy[1] + scale * joints[:, 1]], axis=1)
    return kp.astype(np.float32), (scale * z).astype(np.float32)


def _sample_people(
    rng: np.random.Generator,
    image_hw: tuple[int, int],
    num_people: int,
    height_range: tuple[float, float],
) -> _People:
    H, W = image_hw
    lo, hi = float(height_range[0]), float(height_range[1])
    if not 0 < lo <= hi:
        raise ValueError(f"invalid height_range {height_range}")
    heights = np.exp(rng.uniform(math.log(lo), math.log(hi), num_people)).astype(np.float32)
    kps = np.zeros((num_people, NUM_PARTS, 2), np.float32)
    depth = np.zeros((num_people, NUM_PARTS), np.float32)
    facing = np.zeros(num_people, np.float32)
    for m in range(num_people):
        h = float(heights[m])
        yaw = float(np.clip(rng.normal(0.0, 35.0), -75.0, 75.0)) * _DEG
        joints = _pose_joints(_sample_body(rng), _sample_angles(rng))
        # Pelvis placed so the person overlaps the image, sometimes cut by a border.
        y_lo, y_hi = 0.3 * h - 0.05 * H, 1.05 * H - 0.3 * h
        if y_lo > y_hi:
            y_lo = y_hi = 0.5 * H
        pelvis = (float(rng.uniform(-0.05 * W, 1.05 * W)), float(rng.uniform(y_lo, y_hi)))
        kps[m], depth[m] = _project(joints, yaw, h, pelvis)
        facing[m] = math.sin(yaw)
    return _People(kps, heights, depth, facing)


def sample_people(
    rng: np.random.Generator,
    image_hw: tuple[int, int],
    num_people: int,
    height_range: tuple[float, float] = (60.0, 340.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Random people in plausible poses.

    Args:
        rng: the random source.
        image_hw: (H, W) of the image they will be drawn in.
        num_people: how many.
        height_range: standing height range in pixels (sampled log-uniformly).

    Returns:
        keypoints float32 [M,14,2] (x, y px, MPII14 order; may lie outside the image) and
        heights float32 [M] (standing height in px).
    """
    people = _sample_people(rng, image_hw, num_people, height_range)
    return people.keypoints, people.heights


# ----------------------------------------------------------------------------- appearance


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV in [0,1] → RGB float32 in [0,255], any matching shapes (last axis added)."""
    i = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = [np.select([i == k for k in range(6)], [c[ch] for c in choices]) for ch in range(3)]
    return (np.stack(rgb, axis=-1) * 255.0).astype(np.float32)


def _cloth_colour(rng: np.random.Generator) -> np.ndarray:
    # Clothes are often dull (black, grey, denim), sometimes saturated.
    if rng.random() < 0.35:
        grey = rng.uniform(25, 230)
        return np.clip(grey + rng.normal(0, 8, 3), 0, 255).astype(np.float32)
    h = rng.random(1)
    s = rng.uniform(0.25, 0.95, 1)
    v = rng.uniform(0.25, 0.95, 1)
    return _hsv_to_rgb(h, s, v)[0]


@dataclass
class Appearance:
    """How one person looks: colours (RGB 0–255), sleeve/leg length and build."""

    skin: np.ndarray
    hair: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    shoes: np.ndarray
    short_sleeves: bool
    shorts: bool
    build: float  # limb thickness multiplier


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Random clothes, skin tone, hair and build."""
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 8, 3).astype(np.float32)
    hair = _HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 6, 3).astype(np.float32)
    shoes = np.float32(rng.uniform(15, 90)) + rng.normal(0, 10, 3).astype(np.float32)
    return Appearance(
        skin=np.clip(skin, 0, 255),
        hair=np.clip(hair, 0, 255),
        upper=_cloth_colour(rng),
        lower=_cloth_colour(rng),
        shoes=np.clip(shoes, 0, 255),
        short_sleeves=bool(rng.random() < 0.4),
        shorts=bool(rng.random() < 0.2),
        build=float(rng.uniform(0.85, 1.25)),
    )


def _random_light(rng: np.random.Generator) -> np.ndarray:
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.8, 0.2), 1.0])
    return (light / np.linalg.norm(light)).astype(np.float32)


# ----------------------------------------------------------------------------- rasteriser


def _unit_clip(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] in place (np.clip's dispatch costs more than the work on small windows)."""
    np.maximum(x, 0.0, out=x)
    return np.minimum(x, 1.0, out=x)


def _to_uint8(canvas: np.ndarray) -> np.ndarray:
    """Round a non-negative planar float canvas [3,H,W] to a uint8 image [H,W,3] (in place)."""
    np.minimum(canvas, 255.0, out=canvas)
    canvas += 0.5
    return canvas.transpose(1, 2, 0).astype(np.uint8, order="C")


_AMBIENT, _DIFFUSE = 0.42, 0.7


def _paint(
    canvas: np.ndarray,
    pmap: np.ndarray,
    idx: int,
    y0: int,
    x0: int,
    alpha: np.ndarray,
    nx: np.ndarray,
    ny: np.ndarray,
    colour: np.ndarray,
    light: np.ndarray,
) -> None:
    """Blend a Lambert-shaded surface with in-plane normal (nx, ny) into a canvas window.

    ``canvas`` is planar float32 [3,H,W] (contiguous rows make the blend twice as fast as
    H×W×3); ``colour`` is [3,1,1] or [3,h,w].
    """
    nz = np.sqrt(np.maximum(1.0 - nx * nx - ny * ny, 0.0))
    shade = _AMBIENT + _DIFFUSE * np.maximum(nx * light[0] + ny * light[1] + nz * light[2], 0.0)
    h, w = alpha.shape
    sub = canvas[:, y0 : y0 + h, x0 : x0 + w]
    sub += alpha * (colour * shade - sub)
    pmap[y0 : y0 + h, x0 : x0 + w][alpha >= 0.5] = idx


def _window(
    xs: Sequence[float], ys: Sequence[float], pad: float, shape: tuple[int, int]
) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """Pixel window around points ± pad, clipped: (y0, x0, xs, ys) or None when empty."""
    H, W = shape
    x0 = max(math.floor(min(xs) - pad), 0)
    x1 = min(math.ceil(max(xs) + pad) + 1, W)
    y0 = max(math.floor(min(ys) - pad), 0)
    y1 = min(math.ceil(max(ys) + pad) + 1, H)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    return y0, x0, xs, ys


def _capsule(
    canvas: np.ndarray,
    pmap: np.ndarray,
    idx: int,
    a: np.ndarray,
    b: np.ndarray,
    r: float,
    colour: np.ndarray,
    light: np.ndarray,
) -> None:
    """A segment a→b of radius r, shaded like a cylinder with round caps."""
    ax, ay, bx, by = float(a[0]), float(a[1]), float(b[0]), float(b[1])
    win = _window((ax, bx), (ay, by), r + 1.0, pmap.shape)
    if win is None:
        return
    y0, x0, xs, ys = win
    px, py = xs - ax, ys - ay
    dx, dy = bx - ax, by - ay
    t = _unit_clip((px * dx + py * dy) * (1.0 / max(dx * dx + dy * dy, 1e-9)))
    px = px - t * dx
    py = py - t * dy
    dist = np.sqrt(px * px + py * py)
    alpha = _unit_clip(r + 0.5 - dist)
    _paint(canvas, pmap, idx, y0, x0, alpha, px / r, py / r, colour, light)


def _convex_hull(pts: np.ndarray) -> np.ndarray:
    """Monotone-chain hull of a few 2-D points, counter-clockwise in (x, y)."""
    p = sorted(map(tuple, pts.tolist()))

    def half(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for q in points:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (q[1] - ay) - (by - ay) * (q[0] - ax) > 0:
                    break
                out.pop()
            out.append(q)
        return out

    lower, upper = half(p), half(p[::-1])
    return np.array(lower[:-1] + upper[:-1], np.float32)


def _torso(
    canvas: np.ndarray,
    pmap: np.ndarray,
    idx: int,
    kp: np.ndarray,
    r: float,
    colour: np.ndarray,
    light: np.ndarray,
) -> None:
    """Shoulders–hips quadrilateral grown by r, shaded as a vertical cylinder."""
    quad = kp[[R_SHO, L_SHO, L_HIP, R_HIP]]
    win = _window(quad[:, 0].tolist(), quad[:, 1].tolist(), r + 1.0, pmap.shape)
    if win is None:
        return
    y0, x0, xs, ys = win
    hull = _convex_hull(quad)
    dist = None
    inside = None
    for k in range(len(hull)):
        a, b = hull[k], hull[(k + 1) % len(hull)]
        px, py = xs - a[0], ys - a[1]
        dx, dy = float(b[0] - a[0]), float(b[1] - a[1])
        t = _unit_clip((px * dx + py * dy) * (1.0 / max(dx * dx + dy * dy, 1e-9)))
        d = np.hypot(px - t * dx, py - t * dy)
        dist = d if dist is None else np.minimum(dist, d)
        if len(hull) >= 3:
            left = dx * py - dy * px >= 0
            inside = left if inside is None else inside & left
    if inside is not None:
        dist = np.where(inside, 0.0, dist)
    alpha = _unit_clip(r + 0.5 - dist)
    # Cylinder normal across the body axis (mid-hip → mid-shoulder).
    top = 0.5 * (quad[0] + quad[1])
    bottom = 0.5 * (quad[2] + quad[3])
    axis = top - bottom
    length = float(np.hypot(*axis))
    axis = axis / length if length > 1e-6 else np.array([0.0, -1.0], np.float32)
    perp = np.array([-axis[1], axis[0]], np.float32)
    t = _unit_clip(((xs - bottom[0]) * axis[0] + (ys - bottom[1]) * axis[1]) / max(length, 1e-6))
    half_top = 0.5 * float(np.hypot(*(quad[1] - quad[0])))
    half_bottom = 0.5 * float(np.hypot(*(quad[2] - quad[3])))
    half = half_bottom + t * (half_top - half_bottom) + r
    s = ((xs - bottom[0]) * perp[0] + (ys - bottom[1]) * perp[1]) / half
    s = np.maximum(np.minimum(s, 1.0), -1.0)
    _paint(canvas, pmap, idx, y0, x0, alpha, s * perp[0], s * perp[1], colour, light)


def _head(
    canvas: np.ndarray,
    pmap: np.ndarray,
    idx: int,
    centre: np.ndarray,
    up: np.ndarray,
    rx: float,
    ry: float,
    skin: np.ndarray,
    hair: np.ndarray,
    light: np.ndarray,
) -> None:
    """An ellipse with its long axis along ``up`` and a hair cap on top."""
    win = _window((float(centre[0]),), (float(centre[1]),), max(rx, ry) + 1.0, pmap.shape)
    if win is None:
        return
    y0, x0, xs, ys = win
    px, py = xs - centre[0], ys - centre[1]
    v = (px * up[0] + py * up[1]) / ry  # towards the head top
    u = (px * -up[1] + py * up[0]) / rx
    rho = np.sqrt(u * u + v * v)
    alpha = _unit_clip((1.0 - rho) * min(rx, ry) + 0.5)
    is_hair = v > 0.3 - 0.45 * u * u
    colour = np.where(is_hair, hair[:, None, None], skin[:, None, None])
    scale = 1.0 / max(rho.max(), 1.0)  # keep the normal on the unit sphere at the rim
    nx = (u * -up[1] + v * up[0]) * scale
    ny = (u * up[0] + v * up[1]) * scale
    _paint(canvas, pmap, idx, y0, x0, alpha, nx, ny, colour, light)


def _draw_person(
    canvas: np.ndarray,
    pmap: np.ndarray,
    idx: int,
    kp: np.ndarray,
    height: float,
    depth: np.ndarray,
    facing: float,
    look: Appearance,
    light: np.ndarray,
) -> None:
    def radius(name: str) -> float:
        return max(_RADII[name] * height * look.build, _MIN_RADIUS)

    fore_col = look.skin if look.short_sleeves else look.upper
    shin_col = look.skin if look.shorts else look.lower
    # Toes point where the person faces, slightly down (the foot sole is below the ankle).
    toe = np.array([0.07 * facing, 0.025], np.float32) * height
    up = kp[HEAD] - kp[NECK]
    up = up / max(float(np.hypot(*up)), 1e-6)
    ry = max(_RADII["head_y"] * height, 2.0)
    rx = max(_RADII["head_x"] * height * (0.9 + 0.1 * look.build), 1.6)
    # The head top sits just inside the ellipse so its pixel belongs to the head.
    head_centre = kp[HEAD] - up * (ry - max(0.12 * ry, 1.0))
    hand_off = kp[R_WRI] - kp[R_ELB], kp[L_WRI] - kp[L_ELB]

    z = depth / max(height, 1.0)
    shapes: list[tuple[float, Any]] = []

    def cap(key: float, a: np.ndarray, b: np.ndarray, name: str, col: np.ndarray) -> None:
        r = radius(name)
        col3 = col[:, None, None]
        shapes.append((key, lambda: _capsule(canvas, pmap, idx, a, b, r, col3, light)))

    # Sort keys: mean depth plus a small bias so, at equal depth, the torso covers the thighs
    # and the arms and head cover the torso.
    for hip, kne, ank in ((R_HIP, R_KNE, R_ANK), (L_HIP, L_KNE, L_ANK)):
        cap(0.5 * (z[hip] + z[kne]), kp[hip], kp[kne], "thigh", look.lower)
        cap(0.5 * (z[kne] + z[ank]) - 0.001, kp[kne], kp[ank], "shin", shin_col)
        cap(z[ank] - 0.002, kp[ank], kp[ank] + toe, "foot", look.shoes)
    for (sho, elb, wri), off in zip(
        ((R_SHO, R_ELB, R_WRI), (L_SHO, L_ELB, L_WRI)), hand_off, strict=True
    ):
        cap(0.5 * (z[sho] + z[elb]) + 0.06, kp[sho], kp[elb], "upper_arm", look.upper)
        cap(0.5 * (z[elb] + z[wri]) + 0.061, kp[elb], kp[wri], "forearm", fore_col)
        hand = kp[wri] + 0.12 * off
        cap(z[wri] + 0.062, hand, hand, "hand", look.skin)
    torso_z = float(z[[R_SHO, L_SHO, R_HIP, L_HIP]].mean()) + 0.02
    r_torso = radius("torso")
    upper = look.upper[:, None, None]
    shapes.append((torso_z, lambda: _torso(canvas, pmap, idx, kp, r_torso, upper, light)))
    cap(z[NECK] + 0.03, kp[NECK], head_centre, "neck", look.skin)
    shapes.append(
        (
            z[NECK] + 0.05,
            lambda: _head(canvas, pmap, idx, head_centre, up, rx, ry, look.skin, look.hair, light),
        )
    )
    for _, draw in sorted(shapes, key=lambda s: s[0]):
        draw()


def render_people(
    rng: np.random.Generator,
    image_hw: tuple[int, int],
    keypoints: np.ndarray,
    heights: np.ndarray,
    background: np.ndarray | None = None,
    *,
    depth: np.ndarray | None = None,
    facing: np.ndarray | None = None,
    appearance: Sequence[Appearance] | None = None,
    light: np.ndarray | None = None,
    order: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw people as shaded capsules over a background, back to front.

    Args:
        rng: random source for what is not given (background, appearance, light).
        image_hw: (H, W).
        keypoints: float32 [M,14,2] image px.
        heights: float32 [M] standing heights in px (set limb thickness).
        background: uint8 [H,W,3]; a :func:`textured_background` when None.
        depth: [M,14] joint depth towards the camera in px, orders a person's limbs (far arm
            behind the torso); None draws legs, torso, arms, head in that order.
        facing: [M] sine of the turn towards image right (feet point that way); None = 0.
        appearance: one :class:`Appearance` per person (fixed looks across video frames).
        light: unit 3-vector (x right, y down, z towards the viewer) shared by all people.
        order: drawing order, back first; default 0..M−1.

    Returns:
        image uint8 [H,W,3] RGB and person_map int16 [H,W]: −1 background, else the index
        (into ``keypoints``) of the person owning the pixel.
    """
    H, W = image_hw
    M = len(keypoints)
    if background is None:
        background = textured_background(rng, image_hw)
    if background.shape != (H, W, 3):
        raise ValueError(f"background shape {background.shape} does not match {(H, W, 3)}")
    if appearance is None:
        appearance = [sample_appearance(rng) for _ in range(M)]
    if light is None:
        light = _random_light(rng)
    depth = np.zeros((M, NUM_PARTS), np.float32) if depth is None else depth
    facing = np.zeros(M, np.float32) if facing is None else facing
    canvas = np.ascontiguousarray(background.transpose(2, 0, 1), dtype=np.float32)
    pmap = np.full((H, W), -1, np.int16)
    kps = np.asarray(keypoints, np.float32)
    for m in range(M) if order is None else order:
        _draw_person(
            canvas,
            pmap,
            int(m),
            kps[m],
            float(heights[m]),
            np.asarray(depth[m], np.float32),
            float(facing[m]),
            appearance[m],
            np.asarray(light, np.float32),
        )
    return _to_uint8(canvas), pmap


def visibility(keypoints: np.ndarray, person_map: np.ndarray) -> np.ndarray:
    """bool [M,14]: inside the image and the keypoint's pixel belongs to its own person."""
    H, W = person_map.shape
    M = len(keypoints)
    xy = np.rint(keypoints).astype(np.int64)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < W) & (xy[..., 1] >= 0) & (xy[..., 1] < H)
    owner = np.full(inside.shape, -2, np.int64)
    owner[inside] = person_map[xy[..., 1][inside], xy[..., 0][inside]]
    return inside & (owner == np.arange(M)[:, None])


# ----------------------------------------------------------------------------- backgrounds


def _interp_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and the linear weight of i1 for resampling n_in → n_out."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def _upsample(small: np.ndarray, H: int, W: int) -> np.ndarray:
    """Planar [C,h,w] → [C,H,W], bilinear (gathers, no BLAS threads)."""
    # Columns first, while the array is small; the row pass then gathers whole rows.
    j0, j1, g = _interp_weights(W, small.shape[2])
    left = small[:, :, j0]
    cols = left + g * (small[:, :, j1] - left)
    i0, i1, f = _interp_weights(H, small.shape[1])
    top = cols[:, i0]
    top += f[:, None] * (cols[:, i1] - top)
    return top


def _distractor_colour(rng: np.random.Generator) -> np.ndarray:
    kind = rng.random()
    if kind < 0.25:  # skin-like, so colour alone does not mean "person"
        return _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 10, 3)
    if kind < 0.6:
        return _cloth_colour(rng)
    return rng.uniform(0, 255, 3)


def _clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    """Rectangles, ellipses, triangles and thin lines (nothing limb- or person-shaped)."""
    H, W = img.shape[1:]
    size = min(H, W)
    for _ in range(int(rng.integers(0, 14))):
        colour = np.clip(_distractor_colour(rng), 0, 255).astype(np.float32)
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        a, b = rng.uniform(0.02, 0.25, 2) * size
        kind = rng.integers(4)
        pad = max(a, b) + 1
        y0, y1 = max(int(cy - pad), 0), min(int(cy + pad) + 1, H)
        x0, x1 = max(int(cx - pad), 0), min(int(cx + pad) + 1, W)
        if y0 >= y1 or x0 >= x1:
            continue
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        th = rng.uniform(0, math.pi)
        u = xs * math.cos(th) + ys * math.sin(th)
        v = -xs * math.sin(th) + ys * math.cos(th)
        if kind == 0:  # rectangle
            mask = (np.abs(u) <= a) & (np.abs(v) <= b)
        elif kind == 1:  # ellipse
            mask = (u / a) ** 2 + (v / b) ** 2 <= 1
        elif kind == 2:  # triangle
            mask = (v >= -b) & (np.abs(u) <= a * (b - v) / (2 * b))
        else:  # thin line, much thinner than a limb of the same length
            mask = (np.abs(u) <= a * 2) & (np.abs(v) <= max(1.0, 0.02 * a))
        shade = 1.0 + 0.25 * (u / (np.abs(u).max() + 1e-6))  # a little gradient, not flat
        sub = img[:, y0:y1, x0:x1]
        alpha = mask * np.float32(rng.uniform(0.6, 1.0))
        sub += alpha * (colour[:, None, None] * shade - sub)


def textured_background(rng: np.random.Generator, image_hw: tuple[int, int]) -> np.ndarray:
    """A random cluttered background: gradient, colour blobs, stripes/checks, shapes, noise.

    Returns:
        uint8 [H,W,3] RGB.
    """
    H, W = image_hw
    # Base colours pulled towards grey: walls and floors are rarely saturated.
    c0 = _distractor_colour(rng)
    c0 = (c0 + rng.uniform(0.3, 0.8) * (c0.mean() - c0)).astype(np.float32)
    c1 = np.clip(c0 + rng.normal(0, 50, 3), 0, 255).astype(np.float32)
    # Gradient and colour blobs are built on a coarse grid and upsampled once (cheap).
    gw = 64
    gh = max(2, round(gw * H / W))
    th = rng.uniform(0, 2 * math.pi)
    xs = np.linspace(0, 1, gw, dtype=np.float32)[None, :]
    ys = np.linspace(0, H / W, gh, dtype=np.float32)[:, None]
    ramp = xs * math.cos(th) + ys * math.sin(th)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    coarse = c0[:, None, None] + ramp * (c1 - c0)[:, None, None]  # planar [3,gh,gw]
    # Blobs: blurred white noise at two scales (isotropic, no grid-aligned tiles).
    for sigma, amp in ((rng.uniform(6, 14), 45.0), (rng.uniform(1.2, 4), 25.0)):
        # Mostly brightness, a little hue: real walls and floors are not rainbow-coloured.
        noise = rng.standard_normal((1, gh, gw)) + 0.4 * rng.standard_normal((3, gh, gw))
        blobs = ndimage.gaussian_filter(noise, (0, sigma, sigma), mode="wrap")
        blobs *= amp * rng.uniform(0.3, 1.0) / max(float(blobs.std()), 1e-6)
        coarse += blobs.astype(np.float32)
    img = _upsample(coarse, H, W)
    # Periodic texture (stripes, checks or waves), on the whole image or its lower part (floor).
    if rng.random() < 0.6:
        period = rng.uniform(4, 40)
        th = rng.uniform(0, math.pi)
        X = np.arange(W, dtype=np.float32)[None, :]
        Y = np.arange(H, dtype=np.float32)[:, None]
        u = (X * math.cos(th) + Y * math.sin(th)) * (2 * math.pi / period)
        kind = rng.integers(3)
        if kind == 0:
            tex = np.sign(np.sin(u))
        elif kind == 1:
            v = (-X * math.sin(th) + Y * math.cos(th)) * (2 * math.pi / period)
            tex = np.sign(np.sin(u)) * np.sign(np.sin(v))
        else:
            tex = np.sin(u)
        tex = tex * rng.uniform(8, 40)
        if rng.random() < 0.5:
            tex = tex * (Y > rng.uniform(0.3, 0.8) * H)
        img += tex * rng.uniform(0.5, 1.0, (3, 1, 1)).astype(np.float32)
    _clutter(rng, img)
    sigma = rng.uniform(0, 10)
    if sigma > 1:  # sensor noise, luminance only (a third of the cost of colour noise)
        img += rng.standard_normal((H, W), dtype=np.float32) * np.float32(sigma)
    np.maximum(img, 0.0, out=img)
    return _to_uint8(img)


# ----------------------------------------------------------------------------- images


@dataclass
class SyntheticSample:
    """One synthetic image with its ground truth.

    Attributes:
        image: uint8 [H,W,3] RGB.
        keypoints: float32 [M,14,2] (x, y) px, MPII14 order; person m is drawn in front of
            persons 0..m−1.
        visible: bool [M,14]: inside the image and not hidden by a person in front.
        heights: float32 [M] standing heights in px.
        person_map: int16 [H,W], −1 background, else the person owning the pixel.
    """

    image: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    heights: np.ndarray
    person_map: np.ndarray


def _as_rng(seed_or_rng: int | Sequence[int] | np.random.Generator) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def generate_image(
    seed_or_rng: int | Sequence[int] | np.random.Generator,
    image_hw: tuple[int, int] = (480, 640),
    num_people: int | tuple[int, int] = (1, 10),
    height_range: tuple[float, float] = (60.0, 340.0),
) -> SyntheticSample:
    """A random image of ``num_people`` people (an int or an inclusive (lo, hi) range).

    ``seed_or_rng`` is a seed (an int or a sequence of ints, e.g. ``[seed, index]``) or a
    generator to draw from. Deterministic: the same seed gives identical bytes.
    """
    rng = _as_rng(seed_or_rng)
    if isinstance(num_people, int):
        m = num_people
    else:
        lo, hi = num_people
        m = int(rng.integers(lo, hi + 1))
    people = _sample_people(rng, image_hw, m, height_range)
    # People whose feet are lower stand nearer the camera: draw them last.
    front = people.keypoints[:, [R_ANK, L_ANK], 1].max(axis=1) + rng.normal(0, 5, m)
    order = np.argsort(front, kind="stable")
    kps, heights = people.keypoints[order], people.heights[order]
    image, pmap = render_people(
        rng, image_hw, kps, heights, depth=people.depth[order], facing=people.facing[order]
    )
    return SyntheticSample(image, kps, visibility(kps, pmap), heights, pmap)


# ----------------------------------------------------------------------------- video


@dataclass
class SyntheticFrame:
    """One frame of a synthetic video.

    Attributes:
        index: frame number from 0.
        t: time in seconds (``index / fps``).
        image: uint8 [H,W,3] RGB.
        keypoints: float32 [M,14,2] (x, y) px, one row per identity (row m is ``ids[m]``).
        visible: bool [M,14]: inside the image and not hidden by a person in front.
        ids: int64 [M] stable identities.
        heights: float32 [M] standing heights in px.
        person_map: int16 [H,W], −1 background, else the row of the person owning the pixel.
    """

    index: int
    t: float
    image: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    ids: np.ndarray
    heights: np.ndarray
    person_map: np.ndarray


_STRIDE = 0.75  # body heights travelled per gait cycle (two steps)
_TURN_RATE = 150 * _DEG  # rad/s, how fast a walker turns towards where they go


@dataclass
class _Walker:
    """State of one moving person."""

    body: dict[str, float]
    height: float
    x: float  # pelvis x, px
    ground: float  # ankle line y, px (larger = nearer the camera)
    vx: float  # px/s
    vy: float
    target_vx: float
    target_vy: float
    yaw: float
    yaw_side: float  # how far they turn when walking sideways
    phase: float
    gesture: bool  # stands about waving an arm instead of walking
    wave_arm: str
    wave_hz: float
    x_range: tuple[float, float]
    ground_range: tuple[float, float]

    def step(self, dt: float) -> None:
        """Advance by dt seconds: steer, bounce off the borders, move, walk."""
        lo, hi = self.x_range
        if (self.x < lo and self.target_vx < 0) or (self.x > hi and self.target_vx > 0):
            self.target_vx = -self.target_vx
        lo, hi = self.ground_range
        if (self.ground < lo and self.target_vy < 0) or (self.ground > hi and self.target_vy > 0):
            self.target_vy = -self.target_vy
        # Velocity eases towards the target, so turning around takes about a second.
        k = min(1.0, 2.5 * dt)
        self.vx += k * (self.target_vx - self.vx)
        self.vy += k * (self.target_vy - self.vy)
        self.x += self.vx * dt
        self.ground += self.vy * dt
        speed = math.hypot(self.vx, self.vy) / self.height  # heights/s
        self.phase += 2 * math.pi * speed / _STRIDE * dt
        target_yaw = self.yaw_side * float(np.clip(self.vx / (0.3 * self.height), -1.0, 1.0))
        turn = float(np.clip(target_yaw - self.yaw, -_TURN_RATE * dt, _TURN_RATE * dt))
        self.yaw += turn

    def angles(self, t: float) -> dict[str, float]:
        """Joint angles now: a gait cycle scaled by speed, plus waving for gesturers."""
        a = _neutral_angles()
        amp = min(1.0, math.hypot(self.vx, self.vy) / self.height / 0.5)
        p = self.phase
        a["lean_fwd"] = amp * 5 * _DEG
        for key, ph, arm_sign in (("l", p, -1.0), ("r", p + math.pi, -1.0)):
            a[f"{key}_hip_flex"] = amp * 22 * _DEG * math.sin(ph)
            a[f"{key}_hip_abd"] = 3 * _DEG
            # The knee bends most early in the swing, stays nearly straight in stance.
            a[f"{key}_knee"] = (4 + amp * 60 * (0.5 + 0.5 * math.cos(ph + 0.6)) ** 3) * _DEG
            # Arms counter-swing the same-side leg; the forward arm bends a little more.
            swing = arm_sign * math.sin(ph)
            a[f"{key}_sh_flex"] = amp * 20 * _DEG * swing
            a[f"{key}_sh_abd"] = 7 * _DEG
            a[f"{key}_elbow"] = (12 + amp * 20 * max(0.0, swing)) * _DEG
        if self.gesture:
            w = 2 * math.pi * self.wave_hz * t
            k = self.wave_arm
            a[f"{k}_sh_abd"] = (125 + 20 * math.sin(w)) * _DEG
            a[f"{k}_sh_flex"] = 15 * _DEG
            a[f"{k}_elbow"] = (45 + 35 * math.sin(w + 1.0)) * _DEG
            a[f"{k}_elbow_dir"] = -0.2
        return a

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [14,2] and depth [14] with the lower ankle on the ground line."""
        joints = _pose_joints(self.body, self.angles(t))
        pelvis_y = self.ground - self.height * float(joints[[R_ANK, L_ANK], 1].max())
        return _project(joints, self.yaw, self.height, (self.x, pelvis_y))


def _make_walkers(
    rng: np.random.Generator,
    image_hw: tuple[int, int],
    num_people: int,
    height_range: tuple[float, float],
) -> list[_Walker]:
    H, W = image_hw
    lo, hi = float(height_range[0]), float(height_range[1])
    if not 0 < lo <= hi:
        raise ValueError(f"invalid height_range {height_range}")
    walkers = []
    for m in range(num_people):
        h = float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
        # Head roughly inside the frame; taller (nearer) people stand lower in the image.
        g_lo = max(0.45 * H, min(0.9 * h, 0.95 * H))
        g_hi = max(0.98 * H, g_lo)
        gesture = num_people > 1 and rng.random() < 0.15
        speed = rng.uniform(0.0, 0.12) if gesture else rng.uniform(0.35, 0.9)  # heights/s
        # Alternate directions so paths cross.
        direction = (1.0 if m % 2 == 0 else -1.0) * (1.0 if rng.random() < 0.8 else -1.0)
        vx = direction * speed * h
        vy = float(rng.uniform(-0.08, 0.08)) * h
        walkers.append(
            _Walker(
                body=_sample_body(rng),
                height=h,
                x=float(rng.uniform(0.1, 0.9) * W),
                ground=float(rng.uniform(g_lo, g_hi)),
                vx=vx,
                vy=vy,
                target_vx=vx,
                target_vy=vy,
                yaw=0.0,
                yaw_side=float(rng.uniform(45, 75)) * _DEG,
                phase=float(rng.uniform(0, 2 * math.pi)),
                gesture=gesture,
                wave_arm=str(rng.choice(["l", "r"])),
                wave_hz=float(rng.uniform(0.8, 1.6)),
                x_range=(-0.1 * h, W + 0.1 * h),
                ground_range=(g_lo, g_hi),
            )
        )
    for w in walkers:  # start already facing the way they walk
        w.yaw = w.yaw_side * float(np.clip(w.vx / (0.3 * w.height), -1.0, 1.0))
    return walkers


def generate_video(
    seed: int,
    image_hw: tuple[int, int] = (480, 640),
    num_people: int = 3,
    num_frames: int = 250,
    fps: float = 25.0,
    height_range: tuple[float, float] = (60.0, 340.0),
    noise: float = 0.0,
) -> Iterator[SyntheticFrame]:
    """Frames of people walking (gait cycle, counter-swinging arms, crossing paths, turning at
    the borders) or standing and waving, over a static background.

    Args:
        seed: everything is determined by it.
        image_hw: (H, W).
        num_people: people in every frame (they may be partly outside it).
        num_frames: length.
        fps: frame rate (sets motion per frame).
        height_range: standing heights in px.
        noise: standard deviation of per-frame gaussian pixel noise (0 = none, compresses best).
    """
    rng = np.random.default_rng(seed)
    background = textured_background(rng, image_hw)
    walkers = _make_walkers(rng, image_hw, num_people, height_range)
    looks = [sample_appearance(rng) for _ in walkers]
    light = _random_light(rng)
    ids = np.arange(num_people, dtype=np.int64)
    heights = np.array([w.height for w in walkers], np.float32)
    dt = 1.0 / fps
    for i in range(num_frames):
        t = i * dt
        poses = [w.pose(t) for w in walkers]
        kps = np.stack([p[0] for p in poses]) if poses else np.zeros((0, NUM_PARTS, 2), np.float32)
        depth = np.stack([p[1] for p in poses]) if poses else np.zeros((0, NUM_PARTS), np.float32)
        facing = np.array([math.sin(w.yaw) for w in walkers], np.float32)
        order = np.argsort([w.ground for w in walkers], kind="stable")
        bg = background
        if noise > 0:
            grain = rng.normal(0, noise, background.shape)
            bg = np.clip(background + grain, 0, 255).astype(np.uint8)
        image, pmap = render_people(
            rng,
            image_hw,
            kps,
            heights,
            bg,
            depth=depth,
            facing=facing,
            appearance=looks,
            light=light,
            order=order,
        )
        yield SyntheticFrame(i, t, image, kps, visibility(kps, pmap), ids, heights, pmap)
        for w in walkers:
            w.step(dt)


# ----------------------------------------------------------------------------- files


def truth_frame(
    index: int,
    t: float,
    keypoints: np.ndarray,
    visible: np.ndarray,
    ids: np.ndarray,
    heights: np.ndarray,
    file: str | None = None,
) -> dict[str, Any]:
    """One entry of a truth document's ``frames`` list (coordinates rounded to 0.01 px)."""
    people = []
    for m in range(len(keypoints)):
        rows = [
            [round(float(x), 2), round(float(y), 2), int(v)]
            for (x, y), v in zip(keypoints[m], visible[m], strict=True)
        ]
        people.append({"id": int(ids[m]), "height": round(float(heights[m]), 2), "keypoints": rows})
    frame: dict[str, Any] = {"i": int(index), "t": round(float(t), 6), "people": people}
    if file is not None:
        frame["file"] = file
    return frame


def truth_document(
    image_hw: tuple[int, int], fps: float | None, frames: list[dict[str, Any]]
) -> dict[str, Any]:
    """The truth JSON object (layout in the module docstring)."""
    H, W = image_hw
    return {
        "format": "deepercut.truth",
        "version": 1,
        "skeleton": MPII14.to_dict(),
        "image_size": [int(W), int(H)],
        "fps": None if fps is None else float(fps),
        "frames": frames,
    }


def load_truth(path: str | Path) -> dict[str, Any]:
    """Read a truth JSON file.

    Returns:
        The document with ``skeleton`` as a :class:`~deepercut.skeleton.Skeleton` and each
        frame as ``{"i", "t", "keypoints": float32 [M,P,2], "visible": bool [M,P],
        "ids": int64 [M], "heights": float32 [M]}`` (plus ``"file"`` for image sets).
    """
    doc = json.loads(Path(path).read_text())
    if doc.get("format") != "deepercut.truth":
        raise ValueError(f"{path}: not a deepercut truth file")
    if doc.get("version") != 1:
        raise ValueError(f"{path}: unsupported truth version {doc.get('version')}")
    skeleton = Skeleton.from_dict(doc["skeleton"])
    P = skeleton.num_parts
    frames = []
    for f in doc["frames"]:
        people = f["people"]
        kv = np.array([p["keypoints"] for p in people], np.float32).reshape(len(people), P, 3)
        frame = {
            "i": int(f["i"]),
            "t": float(f["t"]),
            "keypoints": kv[..., :2].copy(),
            "visible": kv[..., 2] > 0,
            "ids": np.array([p["id"] for p in people], np.int64),
            "heights": np.array([p.get("height", np.nan) for p in people], np.float32),
        }
        if "file" in f:
            frame["file"] = f["file"]
        frames.append(frame)
    return {**doc, "skeleton": skeleton, "frames": frames}


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 [H,W,3] RGB image as PNG (PyAV's png encoder)."""
    import av

    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height = image.shape[1], image.shape[0]
    codec.pix_fmt = "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    packets = [*codec.encode(frame), *codec.encode(None)]
    Path(path).write_bytes(b"".join(bytes(p) for p in packets))


def write_video(
    path: str | Path,
    frames_iter: Iterator[SyntheticFrame],
    fps: float,
    truth_path: str | Path | None = None,
    crf: int = 23,
) -> dict[str, Any]:
    """Encode frames as H.264 (yuv420p) MP4 and optionally write their truth JSON.

    Returns:
        The truth document (also when ``truth_path`` is None).
    """
    import av

    rate = Fraction(fps).limit_denominator(1001)
    frames: list[dict[str, Any]] = []
    image_hw: tuple[int, int] | None = None
    with av.open(str(path), "w") as container:
        stream = None
        for f in frames_iter:
            if stream is None:
                image_hw = f.image.shape[:2]
                if image_hw[0] % 2 or image_hw[1] % 2:
                    raise ValueError(f"yuv420p needs even width and height, got {image_hw}")
                stream = container.add_stream("libx264", rate=rate)
                stream.height, stream.width = image_hw
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf)}
            vf = av.VideoFrame.from_ndarray(f.image, format="rgb24")
            vf.pts = f.index
            container.mux(stream.encode(vf))
            frames.append(truth_frame(f.index, f.t, f.keypoints, f.visible, f.ids, f.heights))
        if stream is None:
            raise ValueError("no frames to write")
        container.mux(stream.encode(None))
    doc = truth_document(image_hw, fps, frames)
    if truth_path is not None:
        Path(truth_path).write_text(json.dumps(doc, separators=(",", ":")))
    return doc
