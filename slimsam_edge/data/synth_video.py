"""Procedural videos with exact per-frame label maps, for tracking tests and ``eval-video``.

``ProceduralVideo(seed, frames, size, objects)`` is a clip of textured shapes (the shapes and fills
of :mod:`slimsam_edge.data.procedural`) moving smoothly over a textured background: each object
drifts, rotates and breathes in scale; objects are drawn in id order, so a higher id occludes a
lower one and the label maps hold only the visible parts. The script of a clip:

- object 1 wanders slowly;
- object 2 (``objects >= 2``) leaves the frame through a side around a third of the clip and comes
  back around two thirds (scripted over the clip's length: in a short clip it moves faster);
- the top object (``objects >= 3``) sweeps across object 1's mid-clip position, occluding it;
- any others drift on slow Lissajous paths.

Colours are kept far from the background's mean and from each other and objects are large (radius
about 14-20 % of the short side, at least 2.5 % of the frame's area), so a SAM-family model can follow them. Every frame is computed on
its own (``video[i]``) from the seed: memory does not grow with the clip length and the same seed
gives the same bytes. ``write_video_dataset`` stores a clip as PNG frames + PNG label maps +
``meta.json`` (+ ``video.mp4``); ``VideoDataset`` reads such a folder back lazily.

Example:
    >>> video = ProceduralVideo(seed=0, frames=8, size=(96, 128), objects=2)
    >>> frame = video[3]
    >>> len(video), frame.image.shape, frame.labels.dtype, video.object_ids
    (8, (96, 128, 3), dtype('uint8'), [1, 2])
    >>> bool(frame.mask(1).any())
    True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..errors import DataError, UsageError
from ..fsutil import atomic_dir
from ..limits import MAX_OBJECTS
from .procedural import ShapeSpec, background, image_hw, pick_colour, sample_shape, texture

#: shapes used in videos (no thin bars: they are hard to follow and to click); ellipses and convex
#: polygons twice as likely
VIDEO_SHAPES = ("ellipse", "ellipse", "convex_polygon", "convex_polygon", "concave_polygon", "star", "ring")
VIDEO_FILLS = ("flat", "flat", "gradient", "noise", "stripes")
VIDEO_BACKGROUNDS = ("gradient", "stripes", "checker", "noise", "noise")
#: an object's shape covers at least this fraction of the frame (redrawn until it does)
MIN_OBJECT_FRACTION = 0.025
#: an object is "occluded" while other objects hide more than this fraction of its in-frame area
OCCLUDED_FRACTION = 0.3
#: nominal frame rate written into meta.json and video.mp4
FPS = 24.0
FORMAT = "slimsam-edge-video"
_SHIFT = 4  # fractional bits of polygon vertices


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One frame: ``image`` (HxWx3 uint8 RGB) and ``labels`` (HxW uint8; 0 background, k = object k).

    Example:
        >>> f = VideoFrame(0, np.zeros((2, 3, 3), np.uint8), np.array([[0, 1, 1], [2, 0, 0]], np.uint8))
        >>> int(f.mask(1).sum()), bool(f.mask(5).any())
        (2, False)
    """

    index: int
    image: np.ndarray
    labels: np.ndarray

    def mask(self, obj_id: int) -> np.ndarray:
        """The visible pixels of object ``obj_id`` (HxW bool; all False when it is not visible)."""
        return self.labels == obj_id


@dataclass(frozen=True, eq=False)
class _Object:
    """One object's look and its pose as a closed-form function of time."""

    obj_id: int
    shape: ShapeSpec
    patch: np.ndarray  # SxSx3 float32 fill in object coordinates (centre at (S-1)/2)
    centre0: np.ndarray  # (x, y) of the drift path
    amp: np.ndarray  # drift amplitude (x, y), pixels
    omega: np.ndarray  # drift angular speed (x, y), radians per frame
    phase: np.ndarray
    spin: float  # radians per frame
    spin0: float
    scale_amp: float
    scale_omega: float
    scale_phase: float
    sweep: tuple | None = None  # (start_xy, end_xy): straight path over the clip instead of drifting
    exit_x: float | None = None  # x the object goes to (off-frame) mid-clip and back from

    def pose(self, t: int, u: float) -> tuple[float, float, float, float]:
        """``(cx, cy, scale, rotation)`` at frame ``t`` (``u`` = t / (frames - 1))."""
        if self.sweep is not None:
            a, b = self.sweep
            cx, cy = a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u
        else:
            cx, cy = self.centre0 + self.amp * np.sin(self.omega * t + self.phase)
        if self.exit_x is not None:
            blend = min(1.0, 1.15 * math.sin(math.pi * u) ** 2)
            cx = (1 - blend) * cx + blend * self.exit_x
        scale = 1.0 + self.scale_amp * math.sin(self.scale_omega * t + self.scale_phase)
        return float(cx), float(cy), scale, float(self.spin0 + self.spin * t)

    def polygons(self, t: int, u: float) -> list[np.ndarray]:
        """Outline polygons in frame pixels (fixed point, ``_SHIFT`` bits): outer, then holes."""
        cx, cy, scale, rotation = self.pose(t, u)
        return [np.round((p + (cx, cy)) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)
                for p in self.shape.outline(scale, rotation)]


def _draw(polys: list[np.ndarray], hw: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(hw, np.uint8)
    cv2.fillPoly(canvas, polys[:1], 1, cv2.LINE_8, shift=_SHIFT)
    if len(polys) > 1:
        cv2.fillPoly(canvas, polys[1:], 0, cv2.LINE_8, shift=_SHIFT)
    return canvas.view(bool)


def _frame_index(index: int, frames: int) -> int:
    """``index`` (negative counts from the end) checked against a clip of ``frames`` frames."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"frame index must be an integer, got {type(index).__name__}")
    i = int(index) + (frames if index < 0 else 0)
    if not 0 <= i < frames:
        raise IndexError(f"frame {index} out of range for a clip of {frames} frames")
    return i


def _check_int(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise UsageError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return int(value)


class _Clip:
    """``len()`` and iteration over ``self[i]`` for a clip of ``self.frames`` frames."""

    frames: int

    def __len__(self) -> int:
        return self.frames

    def __iter__(self) -> Iterator[VideoFrame]:
        return (self[i] for i in range(self.frames))  # type: ignore[index]


class ProceduralVideo(_Clip):
    """A procedural clip; ``len()``, iteration and ``video[i]`` give :class:`VideoFrame`.

    ``size`` is ``(height, width)`` or one side; ``objects`` is 1..``MAX_OBJECTS``. ``meta()``
    describes the clip (visible frame ranges and enter/leave/occlusion events per object).

    Example:
        >>> v = ProceduralVideo(seed=1, frames=5, size=64, objects=1)
        >>> [f.index for f in v], np.array_equal(v[2].image, ProceduralVideo(1, 5, 64, 1)[2].image)
        ([0, 1, 2, 3, 4], True)
    """

    def __init__(self, seed: int = 0, frames: int = 60, size: int | tuple[int, int] = (240, 320),
                 objects: int = 3):
        self.seed = _check_int("seed", seed, 0, 2**63 - 1)
        self.frames = _check_int("frames", frames, 1, 10**7)
        self.objects = _check_int("objects", objects, 1, MAX_OBJECTS)
        self.size = image_hw(size)
        self._meta: dict | None = None
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0]))
        h, w = self.size
        grid = np.mgrid[0:h, 0:w].astype(np.float32)
        self._background = background(rng, grid, self.size, VIDEO_BACKGROUNDS)
        colours = [self._background.reshape(-1, 3).mean(0)]
        self._objects: list[_Object] = []
        for k in range(1, self.objects + 1):
            colour = pick_colour(rng, np.array(colours), min_dist=110.0)
            colours.append(colour)
            self._objects.append(self._make_object(rng, k, colour))

    def _make_object(self, rng: np.random.Generator, k: int, colour: np.ndarray) -> _Object:
        h, w = self.size
        short = min(h, w)
        for _ in range(8):  # a notched polygon or thin star can come out small: draw again
            r = rng.uniform(0.14, 0.2) * short
            shape = sample_shape(rng, str(rng.choice(VIDEO_SHAPES)), r)
            polys = [p.astype(np.float32) for p in shape.outline()]
            area = cv2.contourArea(polys[0]) - sum(cv2.contourArea(p) for p in polys[1:])
            if area >= MIN_OBJECT_FRACTION * h * w:
                break
        extent = max(float(np.linalg.norm(p, axis=1).max()) for p in shape.outline())  # any rotation
        scale_amp = rng.uniform(0.05, 0.15)
        side = int(math.ceil(2 * extent * 1.1)) + 3
        grid = np.mgrid[0:side, 0:side].astype(np.float32)
        mid = (side - 1) / 2
        patch = texture(rng, str(rng.choice(VIDEO_FILLS)), colour, grid, (mid, mid), r, 30.0)
        dims = np.array([w, h], np.float64)
        slow = k == 1
        centre0 = dims * rng.uniform(0.35, 0.65, 2) if slow else dims * rng.uniform(0.3, 0.7, 2)
        amp = dims * (rng.uniform(0.04, 0.09, 2) if slow else rng.uniform(0.08, 0.2, 2))
        omega = 2 * math.pi / rng.uniform(80, 160, 2)
        obj = dict(
            obj_id=k, shape=shape, patch=patch, centre0=centre0, amp=amp, omega=omega,
            phase=rng.uniform(0, 2 * math.pi, 2), spin=math.radians(rng.uniform(0.5, 2.0)) * rng.choice((-1, 1)),
            spin0=rng.uniform(0, 2 * math.pi), scale_amp=scale_amp,
            scale_omega=2 * math.pi / rng.uniform(50, 110), scale_phase=rng.uniform(0, 2 * math.pi),
        )
        if k == 2:  # leaves through the side it is nearer to, comes back
            margin = extent * (1 + scale_amp) + 2
            obj["exit_x"] = w + margin if centre0[0] >= w / 2 else -margin
        if k == self.objects and k >= 3:  # sweeps over object 1's mid-clip position
            first = self._objects[0]
            target = np.array(first.pose(self.frames // 2, 0.5)[:2])
            angle = rng.uniform(-math.pi / 6, math.pi / 6) + rng.choice((0, math.pi))
            direction = np.array([math.cos(angle), math.sin(angle)])
            low, high = np.full(2, 0.1) * dims, np.full(2, 0.9) * dims
            reach = [(target - low) / np.maximum(np.abs(direction), 1e-6),
                     (high - target) / np.maximum(np.abs(direction), 1e-6)]
            d = min(0.35 * w, float(np.min(reach)))
            obj["sweep"] = (target - d * direction, target + d * direction)
        return _Object(**obj)

    @property
    def object_ids(self) -> list[int]:
        """Ids of the clip's objects, ``[1, ..., objects]``."""
        return [o.obj_id for o in self._objects]

    def _u(self, t: int) -> float:
        return t / (self.frames - 1) if self.frames > 1 else 0.0

    def _shapes(self, t: int) -> list[tuple[_Object, np.ndarray]]:
        """Each object's full (unoccluded, in-frame) mask at frame ``t``."""
        return [(obj, _draw(obj.polygons(t, self._u(t)), self.size)) for obj in self._objects]

    def __getitem__(self, index: int) -> VideoFrame:
        t = _frame_index(index, self.frames)
        image = self._background.copy()
        labels = np.zeros(self.size, np.uint8)
        for obj, mask in self._shapes(t):  # id order: later objects on top
            ys, xs = np.nonzero(mask)
            if ys.size == 0:
                continue
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            cx, cy, scale, rotation = obj.pose(t, self._u(t))
            c, s = scale * math.cos(rotation), scale * math.sin(rotation)
            mid = (obj.patch.shape[0] - 1) / 2
            affine = np.array([[c, -s, cx - (c - s) * mid - x0], [s, c, cy - (s + c) * mid - y0]])
            fill = cv2.warpAffine(obj.patch, affine, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
            box = mask[y0:y1, x0:x1]
            image[y0:y1, x0:x1][box] = fill[box]
            labels[mask] = obj.obj_id
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, t]))
        image = cv2.GaussianBlur(image, (0, 0), 0.6)  # soft edges, like a camera
        image += 2.0 * rng.standard_normal(image.shape, dtype=np.float32)  # sensor noise
        return VideoFrame(t, np.clip(np.rint(image), 0, 255).astype(np.uint8), labels)

    def meta(self) -> dict:
        """JSON-able description: seed, frames, size, objects, per-object visible frame ranges and
        shapes, and the list of ``{"frame", "object", "event"}`` events (enters / leaves the frame,
        occluded / unoccluded by other objects), frame by frame.

        Example:
            >>> m = ProceduralVideo(seed=0, frames=40, size=(96, 128), objects=3).meta()
            >>> m["frames"], m["size"], m["objects"], sorted(m["visible"])
            (40, [96, 128], 3, ['1', '2', '3'])
            >>> [e["event"] for e in m["events"] if e["object"] == 2][:3]
            ['enters', 'leaves', 'enters']
        """
        if self._meta is None:
            self._meta = self._describe()
        return json.loads(json.dumps(self._meta))  # a deep copy

    def _describe(self) -> dict:
        ids = self.object_ids
        visible: dict[int, list[list[int]]] = {k: [] for k in ids}
        events: list[dict] = []
        present = {k: False for k in ids}
        occluded = {k: False for k in ids}
        for t in range(self.frames):
            shapes = self._shapes(t)
            labels = np.zeros(self.size, np.uint8)
            for obj, mask in shapes:
                labels[mask] = obj.obj_id
            counts = np.bincount(labels.ravel(), minlength=len(ids) + 1)
            for obj, mask in shapes:
                k, full, seen = obj.obj_id, int(np.count_nonzero(mask)), int(counts[obj.obj_id])
                if seen:
                    runs = visible[k]
                    if runs and runs[-1][1] == t - 1:
                        runs[-1][1] = t
                    else:
                        runs.append([t, t])
                now_present = full > 0
                now_occluded = now_present and full - seen > OCCLUDED_FRACTION * full
                if now_present != present[k]:
                    events.append({"frame": t, "object": k, "event": "enters" if now_present else "leaves"})
                if now_occluded != occluded[k]:
                    events.append({"frame": t, "object": k,
                                   "event": "occluded" if now_occluded else "unoccluded"})
                present[k], occluded[k] = now_present, now_occluded
        return {
            "format": FORMAT, "version": 1, "seed": self.seed, "frames": self.frames,
            "size": list(self.size), "objects": self.objects, "object_ids": ids, "fps": FPS,
            "shapes": {str(o.obj_id): o.shape.kind for o in self._objects},
            "visible": {str(k): runs for k, runs in visible.items()},
            "events": events,
        }


def _frame_name(i: int) -> str:
    return f"{i:05d}.png"


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image as PNG
        raise DataError(f"{path}: could not encode the PNG")
    path.write_bytes(buf.tobytes())


def write_video_dataset(video, out_dir: Path | str, *, mp4: bool = True,
                        progress: Callable[[int, int], None] | None = None) -> dict:
    """Write ``video`` (a :class:`ProceduralVideo` or anything with ``len``, iteration of
    :class:`VideoFrame` and ``meta()``) to ``out_dir`` atomically.

    Layout: ``frames/00000.png`` (RGB), ``masks/00000.png`` (uint8 label maps), ``meta.json``
    (the clip's ``meta()``) and, with ``mp4``, ``video.mp4`` (``FPS`` frames a second; skipped,
    with ``"mp4": null``, where OpenCV has no MPEG-4 encoder). An existing folder is replaced only
    if it is a video dataset and only once the new one is complete. ``progress(done, total)`` is
    called after each frame. Returns ``{"out", "frames", "size", "objects", "seed", "events",
    "mp4"}``.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "clip"
        >>> s = write_video_dataset(ProceduralVideo(frames=3, size=64, objects=1), out, mp4=False)
        >>> s["frames"], sorted(p.name for p in out.iterdir())
        (3, ['frames', 'masks', 'meta.json'])
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "meta.json").is_file())):
        raise UsageError(f"{out} exists and is not a video dataset folder; pass a new folder")
    meta = video.meta()
    total = len(video)
    h, w = meta["size"]
    with atomic_dir(out) as tmp:
        for sub in ("frames", "masks"):
            (tmp / sub).mkdir()
        writer = None
        if mp4:
            writer = cv2.VideoWriter(str(tmp / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                     float(meta.get("fps", FPS)), (w, h))
            if not writer.isOpened():
                writer = None
        try:
            for i, frame in enumerate(video):
                bgr = np.ascontiguousarray(frame.image[..., ::-1])
                _write_png(tmp / "frames" / _frame_name(i), bgr)
                _write_png(tmp / "masks" / _frame_name(i), frame.labels)
                if writer is not None:
                    writer.write(bgr)
                if progress is not None:
                    progress(i + 1, total)
        finally:
            if writer is not None:
                writer.release()
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return {"out": str(out), "frames": total, "size": [h, w], "objects": meta["objects"],
            "seed": meta.get("seed"), "events": len(meta.get("events", [])),
            "mp4": str(out / "video.mp4") if writer is not None else None}


class VideoDataset(_Clip):
    """A folder written by :func:`write_video_dataset`, read lazily (one frame's PNGs per access).

    Same interface as :class:`ProceduralVideo`: ``len``, iteration, ``[i]``, ``object_ids``,
    ``meta()``. A malformed folder (no or bad ``meta.json``, a missing or unreadable frame, a
    frame of the wrong size) raises a one-line :class:`DataError` naming the file.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "clip"
        >>> clip = ProceduralVideo(seed=4, frames=2, size=64, objects=2)
        >>> _ = write_video_dataset(clip, out, mp4=False)
        >>> ds = VideoDataset(out)
        >>> len(ds), ds.object_ids, np.array_equal(ds[1].labels, clip[1].labels)
        (2, [1, 2], True)
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not self.path.is_dir():
            raise DataError(f"{self.path}: not a folder; pass a folder written by `slimsam-edge data video`")
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise DataError(f"{meta_path}: missing; this is not a video dataset "
                            "(write one with `slimsam-edge data video`)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{meta_path}: unreadable ({type(err).__name__}); rewrite the folder") from None
        try:
            self.frames = int(meta["frames"])
            self.size = (int(meta["size"][0]), int(meta["size"][1]))
            ids = [int(k) for k in meta["object_ids"]]
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise DataError(f"{meta_path}: malformed ({type(err).__name__}: {err}); "
                            "expected frames, size and object_ids") from None
        if self.frames < 1 or min(self.size) < 1 or any(not 0 < k < 256 for k in ids):
            raise DataError(f"{meta_path}: malformed (frames {self.frames}, size {self.size}, "
                            f"object ids {ids})")
        self._meta, self._ids = meta, ids
        for sub in ("frames", "masks"):
            for i in range(self.frames):
                if not (self.path / sub / _frame_name(i)).is_file():
                    raise DataError(f"{self.path / sub / _frame_name(i)}: missing; meta.json lists "
                                    f"{self.frames} frames")

    @property
    def object_ids(self) -> list[int]:
        """The object ids listed in ``meta.json``."""
        return list(self._ids)

    def meta(self) -> dict:
        """The folder's ``meta.json`` (a copy)."""
        return json.loads(json.dumps(self._meta))

    def _read(self, path: Path, flags: int, channels: int) -> np.ndarray:
        array = cv2.imread(str(path), flags)
        if array is None:
            raise DataError(f"{path}: missing or not a readable PNG; rewrite the folder")
        want = (*self.size, 3) if channels == 3 else self.size
        if array.shape != want or array.dtype != np.uint8:
            raise DataError(f"{path}: {array.dtype} {'x'.join(map(str, array.shape))} image, expected "
                            f"uint8 {'x'.join(map(str, want))} (meta.json)")
        return array

    def __getitem__(self, index: int) -> VideoFrame:
        i = _frame_index(index, self.frames)
        image = self._read(self.path / "frames" / _frame_name(i), cv2.IMREAD_COLOR, 3)
        labels = self._read(self.path / "masks" / _frame_name(i), cv2.IMREAD_UNCHANGED, 1)
        return VideoFrame(i, np.ascontiguousarray(image[..., ::-1]), labels)
