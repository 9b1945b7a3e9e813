"""The synthetic shapes dataset: class-conditional images, one shape family per class on a textured background.

Every image is a pure function of (split, index): label = index % 10 and all randomness comes from
np.random.default_rng([SPLIT_SEEDS[split], index]), so any index renders on its own. The class shape
(random colour, fill style, position, scale, rotation, proportions) sits on a gradient, stripe,
checker or smooth-noise background; one or two neutral blobs are drawn behind or over it, and some
images hold a second, smaller instance of the same shape. Shapes are drawn at 2x with PIL and box
filtered down, so their edges are anti-aliased. `write_shapes` writes images 0..n-1 of a split as
records of the shared schema (records.py; caption empty); the pretraining tasks can also render them
into memory (migm_jax.pretrain.images).
"""

from __future__ import annotations

import colorsys
import math
import operator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from migm_jax.data.records import write_split

RESOLUTION = 64
CLASS_NAMES = ("disc", "square", "triangle", "cross", "star", "ring", "crescent", "arrow", "heart", "zigzag")
SPLIT_SEEDS = {"train": 1001, "test": 2002}

_SS = 2  # supersampling factor of the shape masks
_Y, _X = (np.mgrid[0:RESOLUTION, 0:RESOLUTION].astype(np.float32) + 0.5) / RESOLUTION * 2 - 1  # (H, W) in [-1, 1]
_LUMA = np.float32([0.299, 0.587, 0.114])


# ---- class shapes: parts (points (k, 2) around the origin, radius ~1; mask value; line width or 0)

_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 40, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 40, endpoint=False))], 1)  # (40, 2) unit circle


def _ellipse(rx: float, ry: float, dx: float = 0.0) -> np.ndarray:
    return _CIRCLE * (rx, ry) + (dx, 0.0)


def _disc(rng):
    return [(_ellipse(1.0, rng.uniform(0.8, 1.0)), 255, 0)]


def _square(rng):
    h = 0.85
    a = h * rng.uniform(0.75, 1.0)
    return [(np.array([[-h, -a], [h, -a], [h, a], [-h, a]]), 255, 0)]


def _triangle(rng):
    t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.2, 0.2, 3)
    r = rng.uniform(1.0, 1.2, 3)
    return [(np.stack([r * np.cos(t), r * np.sin(t)], 1), 255, 0)]


def _cross(rng):
    t = rng.uniform(0.2, 0.32)
    arm = np.array([(-t, -1), (t, -1), (t, -t)])  # one arm, then the same turned by 90, 180, 270 degrees
    turn = np.array([[0, -1], [1, 0]])
    return [(np.concatenate([arm @ np.linalg.matrix_power(turn, k).T for k in range(4)]), 255, 0)]


def _star(rng):
    n = int(rng.integers(5, 7))
    t = np.arange(2 * n) * np.pi / n
    r = np.where(np.arange(2 * n) % 2, rng.uniform(0.38, 0.5), 1.0)
    return [(np.stack([r * np.cos(t), r * np.sin(t)], 1), 255, 0)]


def _ring(rng):
    a, ri = rng.uniform(0.85, 1.0), rng.uniform(0.45, 0.62)
    return [(_ellipse(1.0, a), 255, 0), (_ellipse(ri, ri * a), 0, 0)]


def _crescent(rng):
    rc = rng.uniform(0.75, 0.9)
    return [(_ellipse(1.0, 1.0), 255, 0), (_ellipse(rc, rc, dx=rng.uniform(0.35, 0.55)), 0, 0)]


def _arrow(rng):
    w, h, hw = rng.uniform(0.14, 0.24), rng.uniform(0.0, 0.35), rng.uniform(0.45, 0.65)
    return [(np.array([[-1, -w], [h, -w], [h, -hw], [1, 0], [h, hw], [h, w], [-1, w]]), 255, 0)]


_T48 = np.linspace(0, 2 * np.pi, 48, endpoint=False)
_HEART = np.stack([np.sin(_T48) ** 3, (5 * np.cos(2 * _T48) + 2 * np.cos(3 * _T48) + np.cos(4 * _T48)
                                       - 13 * np.cos(_T48) - 2.5) / 15], 1)  # (48, 2): lobes up, tip down


def _heart(rng):
    return [(_HEART * (rng.uniform(0.85, 1.15), 1.0), 255, 0)]


def _zigzag(rng):
    k = int(rng.integers(3, 5))
    y = rng.uniform(0.35, 0.6) * np.where(np.arange(k + 1) % 2, 1.0, -1.0)
    return [(np.stack([np.linspace(-1, 1, k + 1), y], 1), 255, rng.uniform(0.28, 0.4))]


_SHAPES = (_disc, _square, _triangle, _cross, _star, _ring, _crescent, _arrow, _heart, _zigzag)


def _blob(rng):
    """A neutral potato-like outline for the distractors (not one of the classes)."""
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    r = 1 + sum(rng.uniform(0.08, 0.2) * np.cos(k * t + rng.uniform(0, 2 * np.pi)) for k in (2, 3))
    return [(np.stack([r * np.cos(t), r * np.sin(t)], 1), 255, 0)]


def _mask(parts, centre: np.ndarray, radius: float, angle: float) -> Image.Image:
    """Coverage (L image, H x W) of the parts rotated by `angle`, scaled by `radius` pixels and moved
    to `centre` (x, y); drawn at 2x and box filtered."""
    img = Image.new("L", (RESOLUTION * _SS, RESOLUTION * _SS), 0)
    draw = ImageDraw.Draw(img)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]]) * radius * _SS
    for pts, fill, width in parts:
        xy = (pts @ rot.T + centre * _SS).ravel().tolist()
        if width:
            draw.line(xy, fill=fill, width=max(1, round(width * radius * _SS)), joint="curve")
        else:
            draw.polygon(xy, fill=fill)
    return img.reduce(_SS)


# ---- colours (float32 RGB in [0, 1]) and backgrounds

def _clip01(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def _rgb(colour: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(_clip01(float(v)) * 255 + 0.5) for v in colour)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.float32(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _contrasting(rng, bg_luma: float, side: float = 0.0) -> np.ndarray:
    """A saturated colour whose luma differs from `bg_luma` by >= 0.3 (on `side` of it when nonzero)."""
    for _ in range(64):
        c = _hsv(rng.random(), rng.uniform(0.35, 1.0), rng.uniform(0.15, 1.0))
        d = float(c @ _LUMA) - bg_luma
        if abs(d) >= 0.3 and d * side >= 0:
            return c
    bright = side > 0 if side else bg_luma < 0.5
    return np.full(3, float(bright), np.float32)


def _direction(rng, origin=(0.0, 0.0)) -> np.ndarray:
    """(H, W) coordinate along a random direction from `origin` (x, y); image coordinates span [-1, 1]."""
    a = rng.uniform(0, 2 * np.pi)
    return (_X - origin[0]) * math.cos(a) + (_Y - origin[1]) * math.sin(a)


def _pattern(rng) -> np.ndarray:
    """(H, W) mixing weight in [0, 1] of the background's two colours."""
    kind = rng.integers(5)
    if kind == 0:  # linear gradient
        return _direction(rng) / 2.8 + 0.5
    if kind == 1:  # radial gradient
        cy, cx = rng.uniform(-1, 1, 2)
        return np.minimum(np.hypot(_X - cx, _Y - cy) / rng.uniform(1.0, 2.0), 1.0)
    if kind == 2:  # soft stripes, period 6-16 px
        u = _direction(rng) * (RESOLUTION / 2) * (2 * np.pi / rng.uniform(6, 16)) + rng.uniform(0, 2 * np.pi)
        return np.clip(0.5 + 1.5 * np.sin(u), 0, 1)
    if kind == 3:  # soft checker, cells 5-12 px
        a, k = rng.uniform(0, np.pi / 2), np.pi * RESOLUTION / 2 / rng.uniform(5, 12)
        c, s = math.cos(a), math.sin(a)
        u, v = _X * c + _Y * s, _Y * c - _X * s
        return np.clip(0.5 + 3.0 * np.sin(k * u) * np.sin(k * v), 0, 1)
    n = int(rng.integers(3, 7))  # smooth noise from an n x n grid
    small = Image.fromarray(rng.random((n, n), dtype=np.float32), mode="F")
    return np.clip(np.asarray(small.resize((RESOLUTION, RESOLUTION), Image.BICUBIC)), 0, 1)


def _mix(c1: np.ndarray, c2: np.ndarray, t: np.ndarray) -> Image.Image:
    """RGB image (1 - t) c1 + t c2 for a weight t (H, W) in [0, 1]."""
    size = (RESOLUTION, RESOLUTION)
    weight = Image.fromarray((t * 255 + 0.5).astype(np.uint8))
    return Image.composite(Image.new("RGB", size, _rgb(c2)), Image.new("RGB", size, _rgb(c1)), weight)


def _background(rng) -> tuple[Image.Image, float]:
    """A pattern between two related, low-contrast colours of a random palette: (RGB image, mean luma)."""
    h, s, v = rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.1, 0.95)
    dh = rng.uniform(-0.12, 0.12) + (0.5 if rng.random() < 0.25 else 0.0)
    c1 = _hsv(h, s, v)
    c2 = _hsv(h + dh, _clip01(s + rng.uniform(-0.2, 0.2)), max(_clip01(v + rng.uniform(-0.25, 0.25)), 0.05))
    t = _pattern(rng)
    return _mix(c1, c2, t), float((c1 + float(t.mean()) * (c2 - c1)) @ _LUMA)


# ---- composing one image (PIL RGB canvas, objects pasted through their coverage masks)

def _paint(canvas: Image.Image, rng, parts, centre, radius: float, colour: np.ndarray, bg_luma: float) -> None:
    """Pastes one object onto the canvas: solid, gradient or outlined fill, sometimes with a drop shadow."""
    mask = _mask(parts, centre, radius, rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.3:
        d = int(rng.integers(1, 4))  # 40% black, d px right and down
        shadow = (np.asarray(mask)[:-d, :-d] * np.float32(0.4)).astype(np.uint8)
        canvas.paste((0, 0, 0), (d, d, RESOLUTION, RESOLUTION), Image.fromarray(shadow))
    style = rng.integers(3)
    fill = _rgb(colour)
    if style == 1:  # linear gradient towards a second colour on the same side of the background's luma
        other = _contrasting(rng, bg_luma, side=float(colour @ _LUMA) - bg_luma)
        u = _direction(rng, (centre / RESOLUTION * 2 - 1)) * RESOLUTION / 2
        fill = _mix(colour, other, np.clip(u / (2 * radius) + 0.5, 0, 1))
    elif style == 2:  # 1-2 px outline in a darker or lighter tone
        canvas.paste(_rgb(colour * rng.uniform(0.35, 0.6) if rng.random() < 0.5 else colour + 0.5), (0, 0), mask)
        for _ in range(int(rng.integers(1, 3))):
            mask = mask.filter(ImageFilter.MinFilter(3))
    canvas.paste(fill, (0, 0), mask)


def _distractor(canvas: Image.Image, rng, near: np.ndarray, radius: float) -> None:
    """A small desaturated blob: anywhere, or on the object's rim (never over its middle)."""
    size = min(RESOLUTION * rng.uniform(0.06, 0.12), 0.45 * radius)
    a, r = rng.uniform(0, 2 * np.pi), radius * rng.uniform(0.75, 1.1)
    centre = near + r * np.array([np.cos(a), np.sin(a)]) if rng.random() < 0.5 else rng.uniform(0, RESOLUTION, 2)
    mask = _mask(_blob(rng), centre, size, rng.uniform(0, 2 * np.pi))
    canvas.paste(_rgb(_hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.15, 0.95))), (0, 0), mask)


def _placed(rng, radius: float) -> np.ndarray:
    """A centre (x, y) in pixels that keeps an object of `radius` (nearly) inside the image."""
    return rng.uniform(0.9 * radius, RESOLUTION - 0.9 * radius, 2)


def _check_split(split: str) -> int:
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r} (expected one of {', '.join(SPLIT_SEEDS)})")
    return SPLIT_SEEDS[split]


def render(index: int, split: str = "train") -> tuple[np.ndarray, int]:
    """Image `index` of `split`: ((64, 64, 3) uint8 RGB, label = index % 10)."""
    seed, index = _check_split(split), operator.index(index)
    if index < 0:
        raise ValueError(f"image index must be >= 0, got {index}")
    rng = np.random.default_rng([seed, index])
    label = index % len(CLASS_NAMES)
    shape = _SHAPES[label]

    canvas, bg_luma = _background(rng)
    radius = RESOLUTION * rng.uniform(0.42, 0.72) / 2
    centre = _placed(rng, radius)
    colour = _contrasting(rng, bg_luma)
    n_blobs = int(rng.integers(1, 3))
    in_front = rng.random(n_blobs) < 0.5
    for front in in_front:
        if not front:
            _distractor(canvas, rng, centre, radius)
    if rng.random() < 0.3:
        small = radius * rng.uniform(0.45, 0.65)
        second = colour if rng.random() < 0.5 else _contrasting(rng, bg_luma)
        _paint(canvas, rng, shape(rng), _placed(rng, small), small, second, bg_luma)
    _paint(canvas, rng, shape(rng), centre, radius, colour, bg_luma)
    for front in in_front:
        if front:
            _distractor(canvas, rng, centre, radius)
    return np.array(canvas), label


def render_batch(indices, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images of `indices` (n,): ((n, 64, 64, 3) uint8, (n,) int32 labels)."""
    _check_split(split)
    images = np.zeros((len(indices), RESOLUTION, RESOLUTION, 3), np.uint8)
    labels = np.zeros(len(indices), np.int32)
    for i, index in enumerate(indices):
        images[i], labels[i] = render(index, split)
    return images, labels


def write_shapes(data_dir: str, split: str, n_images: int, images_per_shard: int = 4096, progress: bool = True) -> str:
    """Writes images 0 .. n_images - 1 of `split` (record i = render(i, split), caption "") into the dataset
    at `data_dir`, keeping its other splits. Returns the dataset folder."""
    seed = _check_split(split)
    meta = {"builder": "shapes", "resolution": RESOLUTION, "class_names": list(CLASS_NAMES)}
    records = ((*render(i, split), "") for i in range(n_images))
    return write_split(data_dir, split, records, n_images, meta, {"seed": seed}, images_per_shard, progress)
