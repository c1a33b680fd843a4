"""Procedural labelled data: images of overlapping shapes with exact instance masks.

Each image has a textured, gradient or noisy background and several objects (ellipses, convex
and concave polygons, stars, rings with holes, thin bars) of sizes from small to large, filled
with flat colours, gradients, stripes, checkers or noise. Later objects occlude earlier ones; the
stored masks are the visible parts. Objects left too small or mostly hidden are removed from the
image (not just from the labels), so every object pixel belongs to exactly one mask.

Sample ``i`` of seed ``S`` uses ``np.random.SeedSequence([S, i])``: any sample can be regenerated
alone, the same seed gives the same bytes, and different seeds give different sets.

Example:
    >>> image, masks = generate_sample(0, 64)
    >>> image.shape, image.dtype, len(masks) > 0, masks[0].dtype
    ((64, 64, 3), dtype('uint8'), True, dtype('bool'))
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from ..errors import UsageError
from .prompts import point_inside_mask
from .records import Annotation, Sample
from .sa1b import mask_bbox_xywh, write_sa1b_sample

SHAPES = ("ellipse", "convex_polygon", "concave_polygon", "star", "ring", "bar")
FILLS = ("flat", "gradient", "stripes", "checker", "noise")
MIN_VISIBLE_FRACTION_OF_IMAGE = 0.003
MIN_VISIBLE_FRACTION_OF_OBJECT = 0.35
MIN_SIZE = 32


RngOrSeed = int | np.random.SeedSequence | np.random.Generator


def _generator(rng_or_seed: RngOrSeed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, (int, np.integer)) and rng_or_seed < 0:
        raise UsageError(f"seed must be >= 0, got {rng_or_seed}")
    return np.random.default_rng(rng_or_seed)


def image_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of a side length or ``(h, w)``; under ``MIN_SIZE`` -> UsageError.

    Example:
        >>> image_hw(64), image_hw((48, 80))
        ((64, 64), (48, 80))
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if int(h) < MIN_SIZE or int(w) < MIN_SIZE:
        raise UsageError(f"image size {h}x{w} is too small; use at least {MIN_SIZE} pixels a side")
    return int(h), int(w)


def pick_colour(rng: np.random.Generator, avoid: np.ndarray, min_dist: float = 70.0) -> np.ndarray:
    """A random RGB colour (float, 0..255) at least ``min_dist`` from every row of ``avoid``.

    ``avoid`` is one colour or an ``Nx3`` array of them; the best of a few tries is returned when
    none is far enough.

    Example:
        >>> c = pick_colour(np.random.default_rng(0), np.array([0.0, 0.0, 0.0]), 100.0)
        >>> bool(np.linalg.norm(c) >= 100)
        True
    """
    avoid = np.atleast_2d(np.asarray(avoid, np.float64))
    best, best_d = None, -1.0
    for _ in range(12):
        c = rng.uniform(0, 255, 3)
        d = float(np.linalg.norm(avoid - c, axis=1).min())
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best  # type: ignore[return-value]


def texture(
    rng: np.random.Generator, kind: str, base: np.ndarray, grid: tuple, centre: tuple,
    scale: float, contrast: float,
) -> np.ndarray:
    """An ``HxWx3`` float32 fill of ``kind`` (one of ``FILLS``) around colour ``base``.

    ``grid`` is ``(yy, xx)`` pixel coordinates (e.g. ``np.mgrid``); the pattern is centred at
    ``centre`` (x, y); ``scale`` sets the gradient length, ``contrast`` the second colour's spread.

    Example:
        >>> grid = np.mgrid[0:8, 0:10].astype(np.float32)
        >>> t = texture(np.random.default_rng(0), "stripes", np.array([90.0, 40, 200]), grid, (5, 4), 5, 30)
        >>> t.shape, t.dtype
        ((8, 10, 3), dtype('float32'))
    """
    yy, xx = grid
    h, w = yy.shape
    angle = rng.uniform(0, math.pi)
    u = (xx - centre[0]) * math.cos(angle) + (yy - centre[1]) * math.sin(angle)
    other = np.clip(base + rng.normal(0, contrast, 3), 0, 255)
    if kind == "flat":
        t = np.zeros((h, w), np.float32)
    elif kind == "gradient":
        t = np.clip(0.5 + u / (2 * scale), 0, 1)
    elif kind == "stripes":
        period = rng.uniform(4, 14)
        t = ((u % period) < period / 2).astype(np.float32)
    elif kind == "checker":
        cell = rng.uniform(3, 10)
        v = -(xx - centre[0]) * math.sin(angle) + (yy - centre[1]) * math.cos(angle)
        t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    else:  # noise: blotchy low-frequency noise between the two colours
        cells = int(rng.integers(3, 9))
        small = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
        t = np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    t = t.astype(np.float32)[..., None]
    return (base * (1 - t) + other * t).astype(np.float32)


@dataclass(frozen=True, eq=False)
class ShapeSpec:
    """The random parameters of one shape, apart from where it is drawn.

    ``sample_shape`` draws them; ``ShapeSpec.draw`` renders the shape at a centre (still images);
    ``ShapeSpec.outline`` gives its polygons in object coordinates at any scale and rotation
    (moving objects). ``rot`` is in radians, ``angle`` (ellipses) in degrees.
    """

    kind: str
    r: float
    rot: float
    radii: np.ndarray | None = None  # polygon kinds: vertex radii ...
    angles: np.ndarray | None = None  # ... and their angles before ``rot``
    axes: tuple[int, int] | None = None  # ellipse / ring
    angle: float = 0.0
    hole: float = 0.0  # ring: inner/outer axis ratio
    length: float = 0.0  # bar
    width: float = 0.0

    def draw(self, hw: tuple[int, int], centre: tuple) -> np.ndarray:
        """The ``HxW`` bool mask of the shape centred at ``centre`` (no anti-aliasing)."""
        canvas = np.zeros(hw, np.uint8)
        cx, cy = centre
        if self.kind in ("ellipse", "ring"):
            c, axes = (round(cx), round(cy)), self.axes
            cv2.ellipse(canvas, c, axes, self.angle, 0, 360, 1, -1, cv2.LINE_8)
            if self.kind == "ring":
                inner = (max(1, round(axes[0] * self.hole)), max(1, round(axes[1] * self.hole)))
                cv2.ellipse(canvas, c, inner, self.angle, 0, 360, 0, -1, cv2.LINE_8)
            return canvas.astype(bool)
        if self.kind == "bar":
            box = cv2.boxPoints(((cx, cy), (self.length, self.width), float(np.degrees(self.rot))))
            pts = np.round(box * 16).astype(np.int32)
        else:
            a = self.angles + self.rot
            pts = np.stack([cx + self.radii * np.cos(a), cy + self.radii * np.sin(a)], 1)
            pts = np.round(pts * 16).astype(np.int32)  # 4 fractional bits, drawn with shift=4
            if self.kind == "convex_polygon":
                pts = cv2.convexHull(pts)
        cv2.fillPoly(canvas, [pts.reshape(-1, 1, 2)], 1, cv2.LINE_8, shift=4)
        return canvas.astype(bool)

    def outline(self, scale: float = 1.0, rotation: float = 0.0) -> list[np.ndarray]:
        """Polygons (``Nx2`` float, x/y around the origin): the outer one, then holes.

        ``rotation`` (radians) is added to the shape's own; ellipses become 64-gons.

        Example:
            >>> spec = sample_shape(np.random.default_rng(0), "ring", 20.0)
            >>> [p.shape[1] for p in spec.outline(1.5, 0.3)]
            [2, 2]
        """
        if self.kind in ("ellipse", "ring"):
            t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
            a = math.radians(self.angle) + rotation
            ring = np.stack([self.axes[0] * np.cos(t), self.axes[1] * np.sin(t)], 1) * scale
            rotm = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
            outer = ring @ rotm
            return [outer, outer * self.hole] if self.kind == "ring" else [outer]
        if self.kind == "bar":
            box = cv2.boxPoints(((0.0, 0.0), (self.length * scale, self.width * scale),
                                 float(np.degrees(self.rot + rotation))))
            return [box.astype(np.float64)]
        a = self.angles + self.rot + rotation
        pts = np.stack([self.radii * np.cos(a), self.radii * np.sin(a)], 1) * scale
        if self.kind == "convex_polygon":
            pts = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
        return [pts]


def sample_shape(rng: np.random.Generator, kind: str, r: float) -> ShapeSpec:
    """Draw the parameters of a ``kind`` shape (one of ``SHAPES``) of radius about ``r``.

    Example:
        >>> spec = sample_shape(np.random.default_rng(0), "star", 10.0)
        >>> spec.kind, int(spec.draw((32, 32), (16, 16)).sum()) > 0
        ('star', True)
    """
    rot = rng.uniform(0, 2 * math.pi)
    if kind in ("ellipse", "ring"):
        axes = (max(2, round(r)), max(2, round(r * rng.uniform(0.45, 1.0))))
        angle = float(rng.uniform(0, 180))
        hole = rng.uniform(0.4, 0.7) if kind == "ring" else 0.0
        return ShapeSpec(kind, r, rot, axes=axes, angle=angle, hole=hole)
    if kind == "convex_polygon":
        n = int(rng.integers(3, 9))
        radii = r * rng.uniform(0.6, 1.0, n)
        return ShapeSpec(kind, r, rot, radii, np.sort(rng.uniform(0, 2 * math.pi, n)))
    if kind == "concave_polygon":
        n = int(rng.integers(5, 11))
        radii = r * rng.uniform(0.55, 1.0, n)
        radii[rng.integers(n)] = r * rng.uniform(0.2, 0.4)  # at least one deep notch
        return ShapeSpec(kind, r, rot, radii, np.sort(rng.uniform(0, 2 * math.pi, n)))
    if kind == "star":
        spikes = int(rng.integers(5, 9))
        radii = np.tile([r, r * rng.uniform(0.35, 0.55)], spikes)
        return ShapeSpec(kind, r, rot, radii, np.arange(2 * spikes) * math.pi / spikes)
    if kind != "bar":
        raise UsageError(f"unknown shape {kind!r}; use one of {', '.join(SHAPES)}")
    length, width = 2 * r * rng.uniform(0.8, 1.5), max(3.0, r * rng.uniform(0.1, 0.22))
    return ShapeSpec(kind, r, rot, length=length, width=width)


BACKGROUNDS = ("flat", "gradient", "gradient", "stripes", "checker", "noise", "noise")


def background(
    rng: np.random.Generator, grid: tuple, hw: tuple[int, int], kinds: tuple[str, ...] = BACKGROUNDS
) -> np.ndarray:
    """A random ``HxWx3`` float32 background: a fill of one of ``kinds`` plus pixel noise.

    Example:
        >>> hw = (16, 24)
        >>> background(np.random.default_rng(0), np.mgrid[0:16, 0:24].astype(np.float32), hw).shape
        (16, 24, 3)
    """
    base = rng.uniform(20, 235, 3)
    kind = str(rng.choice(kinds))
    scale = 0.5 * max(hw)
    bg = texture(rng, kind, base, grid, (hw[1] / 2, hw[0] / 2), scale, contrast=28.0)
    return bg + rng.normal(0, rng.uniform(0, 10), (*hw, 3)).astype(np.float32)


def generate_sample(
    rng_or_seed: RngOrSeed,
    size: int | tuple[int, int] = 256,
    *,
    return_kinds: bool = False,
) -> tuple:
    """Generate one image and the visible masks of its objects.

    Returns ``(image_rgb, masks)`` -- an ``HxWx3`` uint8 image and a list of disjoint non-empty
    ``HxW`` bool masks -- or ``(image_rgb, masks, kinds)`` with ``return_kinds=True`` (the shape
    name of each mask). ``size`` is a side length or ``(height, width)``.

    Example:
        >>> img, masks, kinds = generate_sample(3, (48, 64), return_kinds=True)
        >>> img.shape, len(masks) == len(kinds), set(kinds) <= set(SHAPES)
        ((48, 64, 3), True, True)
    """
    rng = _generator(rng_or_seed)
    hw = image_hw(size)
    h, w = hw
    grid = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = background(rng, grid, hw)
    bg_mean = bg.reshape(-1, 3).mean(0)
    min_area = MIN_VISIBLE_FRACTION_OF_IMAGE * h * w
    objects: list[tuple[str, np.ndarray, np.ndarray]] = []  # kind, full mask, fill values
    wanted = int(rng.integers(3, 9))
    for _ in range(4 * wanted):
        if len(objects) == wanted:
            break
        kind = str(rng.choice(SHAPES))
        r = math.exp(rng.uniform(math.log(0.06), math.log(0.4))) * min(h, w)
        centre = (rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h)
        mask = sample_shape(rng, kind, r).draw(hw, centre)
        fill_kind, colour = str(rng.choice(FILLS)), pick_colour(rng, bg_mean)
        ys, xs = np.nonzero(mask)
        if ys.size < min_area:
            continue
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        fill = texture(rng, fill_kind, colour, (grid[0][box], grid[1][box]), centre, r, 45.0)
        objects.append((kind, mask, fill[mask[box]]))  # fill only computed over the box
    if not objects:  # practically unreachable; keeps the "at least one instance" promise
        mask = np.zeros(hw, np.uint8)
        cv2.ellipse(mask, (w // 2, h // 2), (w // 4, h // 4), 0, 0, 360, 1, -1, cv2.LINE_8)
        fill = np.full((int(mask.sum()), 3), 255 - bg_mean, np.float32)
        objects.append(("ellipse", mask.astype(bool), fill))
    # Visible parts; drop objects that end up too small or mostly hidden, then render the rest.
    visible = [m.copy() for _, m, _ in objects]
    for i, (_, m, _) in enumerate(objects):
        for j in range(i):
            visible[j] &= ~m
    keep = [
        i for i, (_, m, _) in enumerate(objects)
        if np.count_nonzero(visible[i]) >= min_area
        and np.count_nonzero(visible[i]) >= MIN_VISIBLE_FRACTION_OF_OBJECT * np.count_nonzero(m)
    ]
    image = bg
    masks = []
    for i in keep:  # removing hidden objects only enlarges the visible parts of the kept ones
        image[objects[i][1]] = objects[i][2]
        masks.append(objects[i][1].copy())
        for earlier in masks[:-1]:
            earlier &= ~objects[i][1]
    if rng.random() < 0.6:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.4, 1.0)))
    image = image + rng.normal(0, rng.uniform(0, 5), image.shape).astype(np.float32)
    out = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    kinds = [objects[i][0] for i in keep]
    return (out, masks, kinds) if return_kinds else (out, masks)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of the set with ``seed``.

    Example:
        >>> float(sample_rng(0, 1).random()) == float(sample_rng(0, 1).random())
        True
    """
    if seed < 0 or index < 0:
        raise UsageError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def sample_stem(seed: int, index: int) -> str:
    """File stem of a procedural sample, e.g. ``proc_0_000012``."""
    return f"proc_{seed}_{index:06d}"


def procedural_sample(seed: int, index: int, size: int | tuple[int, int] = 256) -> Sample:
    """Sample ``index`` of the set with ``seed``, in memory, with prompt points and boxes.

    Example:
        >>> s = procedural_sample(0, 5, 64)
        >>> s.image_id, s.image.shape, s.annotations[0].point_coords is not None
        ('proc_0_000005', (64, 64, 3), True)
    """
    image, masks, kinds = generate_sample(sample_rng(seed, index), size, return_kinds=True)
    annotations = []
    for j, (mask, kind) in enumerate(zip(masks, kinds)):
        x, y, bw, bh = mask_bbox_xywh(mask)
        annotations.append(Annotation(mask, (x, y, x + bw, y + bh), [point_inside_mask(mask)],
                                      int(np.count_nonzero(mask)), j, extra={"shape": kind}))
    return Sample(None, annotations, image_id=sample_stem(seed, index), image=image)


class ProceduralDataset:
    """``count`` procedural samples of ``seed``, generated on access (nothing touches disk).

    Example:
        >>> ds = ProceduralDataset(4, seed=1, size=64)
        >>> len(ds), len(ds[2].masks) > 0
        (4, True)
    """

    layout = "procedural"

    def __init__(self, count: int, seed: int = 0, size: int | tuple[int, int] = 256):
        if count < 1:
            raise UsageError(f"count must be >= 1, got {count}")
        if seed < 0:
            raise UsageError(f"seed must be >= 0, got {seed}")
        self.count, self.seed, self.size = int(count), int(seed), size
        image_hw(size)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} samples")
        return procedural_sample(self.seed, index, self.size)


def write_procedural(
    out_dir: Path | str,
    count: int,
    seed: int = 0,
    size: int | tuple[int, int] = 256,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write ``count`` samples in SA-1B layout (``proc_{seed}_{i:06d}.png`` + ``.json``).

    ``progress(done, total)`` is called after each sample. Returns ``{"out", "count", "seed",
    "size", "instances"}``.

    Example:
        >>> import tempfile
        >>> write_procedural(tempfile.mkdtemp(), 2, seed=0, size=64)["count"]
        2
    """
    if count < 1:
        raise UsageError(f"count must be >= 1, got {count}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder; pass a folder for the samples")
    instances = 0
    for i in range(count):
        s = procedural_sample(seed, i, size)
        write_sa1b_sample(out, s.image_id, s.image, s.masks,  # type: ignore[arg-type]
                          [a.point_coords for a in s.annotations], image_id=s.image_id,
                          extra=[a.extra for a in s.annotations])
        instances += len(s.annotations)
        if progress is not None:
            progress(i + 1, count)
    h, w = image_hw(size)
    return {"out": str(out), "count": count, "seed": seed, "size": [h, w] if h != w else h,
            "instances": instances}
