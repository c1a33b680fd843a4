"""Segment and track objects through a video or camera stream: ``slimsam-edge video``'s job.

Torch-free. Frames come from :func:`~slimsam_edge.apps.video_io.open_source` (video file, camera,
folder or glob of images, stream URL) and run through the threaded
:class:`~slimsam_edge.apps.pipeline.Pipeline`: the encoder works on one frame while the
:class:`~slimsam_edge.apps.tracker.Tracker` (or the segment-everything
:class:`~slimsam_edge.apps.everything.MaskGenerator`) decodes the previous one and the sink writes
the overlay video (each object in its own colour with its id) and, optionally, one JSON line per
frame with COCO-RLE masks::

    {"frame": 12, "objects": [{"id": 1, "state": "tracking", "score": 0.93, "bbox": [x, y, w, h],
                               "rle": {"size": [h, w], "counts": "..."}}]}

Prompts: each first-frame object is one positive point or one box (ids 1, 2, ... in that order);
a prompts file (:func:`load_prompts`) adds objects on later frames, re-prompts or removes them.
In ``everything`` mode each frame is segmented on its own (ids number that frame's masks, largest
first; state ``"everything"``): no identity is kept across frames.

Outputs are written to temporary names and renamed at the end; after Ctrl-C the frames so far are
kept, as a playable video and a JSONL of the same frames. In real-time mode the frames the encoder
skipped are not in the JSONL (``"frame"`` is the source's frame index) and the video shows the
previous overlay in their place (as a live display would; the video keeps the source's timing); a
file is then read at its frame rate, so the drops are those a live camera at that rate would cause.

Prompts file (JSON; frames are the source's 0-based frame indices, coordinates in pixels)::

    {"prompts": [
      {"frame": 0,  "point": [120, 80]},                  # a new object (the next id)
      {"frame": 30, "box": [10, 20, 90, 140]},            # a new object
      {"frame": 30, "points": [[50, 60], [70, 60, 0]]},   # a new object; a third value is the label
      {"frame": 45, "id": 1, "box": [100, 60, 160, 120]}, # re-prompt object 1 (e.g. after it was lost)
      {"frame": 60, "remove": 2}                          # stop tracking object 2
    ]}

Example:
    >>> events = plan_prompts([Target(points=((10, 20, 1),))],
    ...                       parse_prompts({"prompts": [{"frame": 5, "box": [0, 0, 8, 8]},
    ...                                                  {"frame": 9, "remove": 1}]}, "p.json"))
    >>> [(e.frame, e.action, e.obj_id) for e in events]
    [(0, 'add', 1), (5, 'add', 2), (9, 'remove', 1)]
    >>> plan_prompts([], parse_prompts({"prompts": [{"frame": 3, "id": 4, "point": [1, 1]}]}, "p.json"))
    Traceback (most recent call last):
    ...
    slimsam_edge.errors.UsageError: p.json: prompts[0] (frame 3): unknown object id 4; objects at that frame: none
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import DataError, PromptError, UsageError

#: output fps when the source does not declare one (a folder of images) and none is given
DEFAULT_FPS = 30.0
ADD, PROMPT, REMOVE = "add", "prompt", "remove"
#: state of the masks of ``everything`` mode (no tracking)
EVERYTHING = "everything"


# ------------------------------------------------------------------------------------ prompts
@dataclass(frozen=True)
class Target:
    """One object's prompt: ``points`` ((x, y, label), ...) and/or ``box`` (x0, y0, x1, y1).

    ``where`` names it in messages (a flag or a prompts-file entry).
    """

    points: tuple[tuple[float, float, float], ...] = ()
    box: tuple[float, float, float, float] | None = None
    where: str = "prompt"

    def prompt(self) -> Any:
        """The :class:`~slimsam_edge.apps.tracker.Prompt` of this target."""
        from .tracker import Prompt

        pts = np.array([p[:2] for p in self.points], np.float64) if self.points else None
        labels = np.array([p[2] for p in self.points], np.int64) if self.points else None
        return Prompt(points=pts, labels=labels, box=None if self.box is None else np.array(self.box, np.float64))

    def check_inside(self, w: int, h: int) -> None:
        """Refuse (one-line PromptError) a point or box corner outside a ``w x h`` frame."""
        corners = [("point", p[:2]) for p in self.points]
        if self.box is not None:
            corners += [("box corner", self.box[:2]), ("box corner", self.box[2:])]
        for what, (x, y) in corners:
            if not (0 <= x <= w and 0 <= y <= h):
                raise PromptError(f"{self.where}: {what} ({x:g}, {y:g}) is outside the {w}x{h} frame "
                                  f"(x in 0..{w}, y in 0..{h})")


@dataclass(frozen=True)
class PromptEvent:
    """What happens to one object at one frame: ``add`` (a new object), ``prompt`` (a new prompt
    for a tracked one) or ``remove``."""

    frame: int
    action: str
    obj_id: int
    target: Target | None = None
    where: str = ""


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: {what} must be a number, got {value!r}")
    return float(value)


def _whole(value: Any, where: str, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{where}: {what} must be a whole number >= {low}, got {value!r}")
    return value


def _point(value: Any, where: str) -> tuple[float, float, float]:
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise UsageError(f"{where}: a point is [x, y] or [x, y, label], got {value!r}")
    x, y = (_number(v, where, "a point coordinate") for v in value[:2])
    label = _number(value[2], where, "a point label") if len(value) == 3 else 1.0
    if label not in (0.0, 1.0):
        raise UsageError(f"{where}: a point label is 1 (foreground) or 0 (background), got {value[2]!r}")
    return x, y, label


_KEYS = {"frame", "id", "point", "points", "box", "remove"}


def parse_prompts(data: Any, name: str) -> list[tuple[int, int | None, Target | None, int | None]]:
    """Validate a prompts file's content (see the module docstring); returns, in file order,
    ``(frame, id or None, target or None, removed id or None)`` per entry.

    Raises:
        UsageError: a malformed entry (one line naming ``name``, the entry and the problem).

    Example:
        >>> parse_prompts({"prompts": [{"frame": 2, "point": [1, 2, 3]}]}, "p.json")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: p.json: prompts[0]: a point label is 1 (foreground) or 0 (background), got 3
    """
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), list) or set(data) != {"prompts"}:
        raise UsageError(f'{name}: expected {{"prompts": [{{"frame": 0, "box": [x0, y0, x1, y1]}}, ...]}} '
                         "(see `slimsam-edge video --help`)")
    out = []
    for k, entry in enumerate(data["prompts"]):
        where = f"{name}: prompts[{k}]"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: each entry is an object with a frame, got {entry!r}")
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise UsageError(f"{where}: unknown key {unknown[0]!r}; keys are {', '.join(sorted(_KEYS))}")
        if "frame" not in entry:
            raise UsageError(f"{where}: no \"frame\" (the 0-based frame index the entry applies to)")
        frame = _whole(entry["frame"], where, "frame", 0)
        has_prompt = any(key in entry for key in ("point", "points", "box"))
        if "remove" in entry:
            if has_prompt or "id" in entry:
                raise UsageError(f"{where}: \"remove\" stands alone (with \"frame\"); drop the other keys")
            out.append((frame, None, None, _whole(entry["remove"], where, "remove", 1)))
            continue
        if not has_prompt:
            raise UsageError(f"{where}: give a \"point\", \"points\" or \"box\" (or \"remove\": id)")
        if "point" in entry and "points" in entry:
            raise UsageError(f"{where}: give \"point\" or \"points\", not both")
        raw = [entry["point"]] if "point" in entry else entry.get("points", [])
        if not isinstance(raw, list) or ("points" in entry and not raw):
            raise UsageError(f"{where}: \"points\" is a non-empty list of [x, y] or [x, y, label]")
        points = tuple(_point(p, where) for p in raw)
        box = None
        if "box" in entry:
            b = entry["box"]
            if not isinstance(b, list) or len(b) != 4:
                raise UsageError(f"{where}: a box is [x0, y0, x1, y1], got {b!r}")
            box = tuple(_number(v, where, "a box coordinate") for v in b)
            if not (box[0] < box[2] and box[1] < box[3]):
                raise UsageError(f"{where}: a box needs x0 < x1 and y0 < y1, got {b!r}")
        if box is None and not any(p[2] == 1.0 for p in points):
            raise UsageError(f"{where}: an object needs a foreground point (label 1) or a box")
        obj_id = _whole(entry["id"], where, "id", 1) if "id" in entry else None
        out.append((frame, obj_id, Target(points, box, where=f"{where} (frame {frame})"), None))
    return out


def load_prompts(path: Path | str) -> list[tuple[int, int | None, Target | None, int | None]]:
    """Read and validate a prompts file (:func:`parse_prompts`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--prompts {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--prompts {path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"--prompts {path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    return parse_prompts(data, f"--prompts {path}")


def plan_prompts(first: Sequence[Target], entries: Iterable[tuple[int, int | None, Target | None, int | None]]
                 ) -> list[PromptEvent]:
    """Number the objects and order the events: ``first`` are objects 1..K on frame 0, then each
    entry of a prompts file (by frame, then file order) adds an object (the next id), re-prompts
    one, or removes one. Ids are never reused.

    Raises:
        UsageError: an entry names an object id that is not tracked at its frame.
    """
    events = [PromptEvent(0, ADD, k + 1, t, t.where) for k, t in enumerate(first)]
    live = {e.obj_id for e in events}
    next_id = len(events) + 1
    for frame, obj_id, target, removed in sorted(entries, key=lambda e: e[0]):
        where = target.where if target is not None else f"remove {removed} (frame {frame})"
        named = removed if removed is not None else obj_id
        if named is not None and named not in live:
            have = ", ".join(str(k) for k in sorted(live)) or "none"
            raise UsageError(f"{where}: unknown object id {named}; objects at that frame: {have}")
        if removed is not None:
            live.discard(removed)
            events.append(PromptEvent(frame, REMOVE, removed, None, where))
        elif obj_id is not None:
            events.append(PromptEvent(frame, PROMPT, obj_id, target, where))
        else:
            live.add(next_id)
            events.append(PromptEvent(frame, ADD, next_id, target, where))
            next_id += 1
    return events


# ------------------------------------------------------------------------------------ stages
@dataclass(frozen=True)
class VideoObject:
    """One object on one frame, as the sink writes it: a mask or an uncompressed RLE (the other is
    made on the sink thread)."""

    id: int
    state: str
    score: float
    bbox: list[int] | None
    mask: np.ndarray | None = None
    rle: dict | None = None

    def get_mask(self) -> np.ndarray:
        from ..data.rle import rle_to_mask

        return self.mask if self.mask is not None else rle_to_mask(self.rle)  # type: ignore[arg-type]

    def record(self) -> dict[str, Any]:
        """The JSONL record (COCO RLE, pycocotools encoding)."""
        from ..data.rle import coco_rle, masks_to_rle

        rle = self.rle if self.rle is not None else masks_to_rle(self.mask[None])[0]  # type: ignore[index]
        return {"id": self.id, "state": self.state, "score": round(float(self.score), 4), "bbox": self.bbox,
                "rle": coco_rle(rle)}


def video_objects(results: dict[int, Any]) -> list[VideoObject]:
    """A :meth:`Tracker.update <slimsam_edge.apps.tracker.Tracker.update>` result as the sink's
    :class:`VideoObject` list, by id."""
    return [VideoObject(k, r.state, float(r.score), None if r.bbox is None else [int(v) for v in r.bbox],
                        mask=r.mask) for k, r in sorted(results.items())]


def draw_tracks(frame: np.ndarray, results: dict[int, Any]) -> np.ndarray:
    """The overlay of a :meth:`Tracker.update <slimsam_edge.apps.tracker.Tracker.update>` result on
    ``frame`` (RGB): each object in the colour of its id, with its id (:func:`draw_objects`).

    Example:
        >>> from slimsam_edge.apps.tracker import TrackResult
        >>> m = np.zeros((40, 60), bool); m[10:30, 20:40] = True
        >>> out = draw_tracks(np.zeros((40, 60, 3), np.uint8), {1: TrackResult(m, 0.9, "tracking", (20, 10, 20, 20))})
        >>> bool(out[20, 30].any()), bool(out[2, 2].any())
        (True, False)
    """
    return draw_objects(frame, video_objects(results))


class TrackStage:
    """The process stage of tracking: applies the due prompt events, then tracks every object."""

    def __init__(self, predictor: Any, events: Sequence[PromptEvent]):
        from .tracker import Tracker

        self.tracker = Tracker(predictor)  # refuses a decoder without the prompt axis (re-export)
        self.events = sorted(events, key=lambda e: e.frame)
        self._next = 0

    def __call__(self, index: int, frame: np.ndarray, embedding: Any) -> list[VideoObject]:
        due = []
        while self._next < len(self.events) and self.events[self._next].frame <= index:
            due.append(self.events[self._next])
            self._next += 1
        # several events may fall due at once (frames dropped in real-time mode): an object added
        # and then re-prompted is added with its latest prompt; added and removed, never added
        adds: dict[int, Target] = {}
        prompts: dict[int, Target] = {}
        for e in due:
            if e.action == ADD or (e.action == PROMPT and e.obj_id in adds):
                adds[e.obj_id] = e.target  # type: ignore[assignment]
            elif e.action == PROMPT:
                prompts[e.obj_id] = e.target  # type: ignore[assignment]
            elif adds.pop(e.obj_id, None) is None:
                prompts.pop(e.obj_id, None)
                self.tracker.remove_object(e.obj_id)
        if self.tracker.objects:
            self.tracker.update(frame, embedding=embedding, prompts={k: t.prompt() for k, t in prompts.items()})
        for k, target in adds.items():
            self.tracker.add_object(frame, target.prompt(), obj_id=k, embedding=embedding)
        return video_objects(self.tracker.results)


class _Embedded:
    """Stands in for the predictor inside a MaskGenerator: ``set_image`` of the frame the encode
    stage already encoded makes that embedding current instead of encoding it again."""

    def __init__(self, predictor: Any):
        self._predictor = predictor
        self.embedding: Any = None

    def set_image(self, image: np.ndarray) -> None:
        emb = self.embedding
        if emb is None or tuple(image.shape[:2]) != tuple(emb.original_size):
            raise UsageError("segment everything in a video runs on whole frames only (no crop layers)")
        self._predictor.set_embedding(emb)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)


class EverythingStage:
    """The process stage of ``everything`` mode: every object of each frame, largest first."""

    def __init__(self, predictor: Any, settings: dict[str, Any]):
        from .everything import MaskGenerator

        self._embedded = _Embedded(predictor)
        self.generator = MaskGenerator(self._embedded, output_mode="uncompressed_rle", **settings)

    def __call__(self, index: int, frame: np.ndarray, embedding: Any) -> list[VideoObject]:
        self._embedded.embedding = embedding
        records = sorted(self.generator.generate(frame), key=lambda r: -r["area"])
        return [VideoObject(k + 1, EVERYTHING, r["predicted_iou"], [int(round(v)) for v in r["bbox"]],
                            rle=r["segmentation"]) for k, r in enumerate(records)]


def draw_objects(frame: np.ndarray, objects: Sequence[VideoObject]) -> np.ndarray:
    """The overlay: each object's mask in the colour of its id (:func:`~slimsam_edge.visualize.mask_colors`,
    stable across frames) with its id written at the centre of its box ("?" after it while uncertain).

    Example:
        >>> m = np.zeros((40, 60), bool); m[10:30, 20:40] = True
        >>> out = draw_objects(np.zeros((40, 60, 3), np.uint8), [VideoObject(2, "tracking", 0.9, [20, 10, 20, 20], m)])
        >>> out.shape, bool(out[20, 30].any()), bool(out[2, 2].any())
        ((40, 60, 3), True, False)
    """
    import cv2

    from ..visualize import mask_colors, overlay_masks

    shown = {o.id: o for o in objects if o.bbox is not None}
    if not shown:
        return frame.copy()
    top = max(shown)
    empty = np.zeros(frame.shape[:2], bool)
    out = overlay_masks(frame, (shown[k].get_mask() if k in shown else empty for k in range(1, top + 1)),
                        count=top)
    colors = mask_colors(top)
    scale = max(0.4, min(frame.shape[:2]) / 600)
    thick = max(1, round(scale * 2))
    for k, o in shown.items():
        text = f"{k}?" if o.state == "uncertain" else str(k)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        bx, by, bw, bh = o.bbox  # type: ignore[misc]
        x, y = bx + (bw - tw) // 2, by + (bh + th) // 2  # centred on its box
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in colors[k - 1]),
                    thick, cv2.LINE_AA)
    return out


class _Sink:
    """Writes the overlay frame and the JSONL record of each frame. Frames dropped in real-time
    mode (gaps in the indices) repeat the previous overlay in the video, as a live display would
    keep showing it, so the video keeps the source's timing; the JSONL has the processed frames."""

    def __init__(self, video: Any, lines: Any):
        self.video, self.lines = video, lines
        self._last: tuple[int, np.ndarray] | None = None

    def __call__(self, index: int, frame: np.ndarray, objects: list[VideoObject]) -> None:
        overlay = draw_objects(frame, objects)
        if self._last is not None:
            for _ in range(index - self._last[0] - 1):
                self.video.write(self._last[1])
        self.video.write(overlay)
        self._last = (index, overlay)
        if self.lines is not None:
            self.lines.write({"frame": index, "objects": [o.record() for o in objects]})


# ------------------------------------------------------------------------------------ run
def run_video(
    source: str,
    bundle: Path | str,
    out: Path | str,
    *,
    targets: Sequence[Target] = (),
    prompts_file: Path | str | None = None,
    everything: bool = False,
    everything_settings: dict[str, Any] | None = None,
    masks: Path | str | None = None,
    realtime: bool = False,
    max_frames: int | None = None,
    fps: float | None = None,
    backend: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    tuning: Any = None,
    progress: Callable[[int, int | None, float, int], None] | None = None,
) -> dict[str, Any]:
    """Track the ``targets`` (first-frame objects) and the prompts file's objects through ``source``,
    or segment everything in each frame; write the overlay video ``out`` (.mp4) and optionally the
    JSONL ``masks``.

    Arguments:
        source: video file, camera index ("0"), folder or glob of images, or stream URL.
        bundle, backend, precision, threads: as :meth:`EdgePredictor.from_bundle`.
        tuning: a :class:`~slimsam_edge.runtimes.tuning.RuntimeTuning` (hint, threads per graph,
            concurrent encodes), as :meth:`EdgePredictor.from_bundle`; the pipeline runs
            ``encode_requests`` encode threads, so frame *n + 1*'s encoding overlaps frame *n*'s.
        targets: first-frame objects (ids 1..K); prompts_file: later prompts (module docstring).
        everything: segment every object of each frame instead (no targets, no prompts file);
            ``everything_settings``: MaskGenerator settings (``points_per_side``, ...).
        realtime: encode the newest frame, dropping (and counting) the ones read meanwhile; a
            file or folder is then read at its frame rate (``fps``, else the source's, else 30), as
            a live camera would deliver it.
        max_frames: stop after reading this many frames.
        fps: frame rate of the output video (default: the source's, else 30).
        progress: optional ``callback(frames_done, total or None, fps, dropped)``.

    Returns:
        ``{"source", "out", "masks", "mode", "frames_read", "frames_done", "dropped", "fps", "seconds",
        "latency_ms", "objects" ({id: last state}), "frame_size", "backend", "precision", "tuning",
        "realtime", "interrupted"}``. Ctrl-C ends the run early with ``"interrupted": True``; the
        outputs then hold the frames done so far.

    Raises (one line each): UsageError (no prompt, a bad prompts file, an unknown object id, an
    output that cannot be written), DataError (a source that cannot be opened or read), PromptError
    (a prompt outside the frame), ImageError (frames changing size), BundleError (a decoder
    without the prompt axis: re-export).

    Example:
        >>> run_video("clip.mp4", "bundle/", "out.mp4")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: no prompt given; pass --point x,y / --box x0,y0,x1,y1 (first frame), --prompts FILE.json, or --everything
    """
    from ..predictor import EdgePredictor
    from .pipeline import Pipeline
    from .video_io import JsonlWriter, VideoWriter, open_source, paced

    entries = load_prompts(prompts_file) if prompts_file is not None else []
    if everything and (targets or entries):
        raise UsageError("--everything segments every object of each frame; drop --point/--box/--prompts, "
                         "or drop --everything to track the objects you prompt")
    if not everything and not targets and not entries:
        raise UsageError("no prompt given; pass --point x,y / --box x0,y0,x1,y1 (first frame), --prompts FILE.json, "
                         "or --everything")
    if max_frames is not None and (isinstance(max_frames, bool) or max_frames < 1):
        raise UsageError(f"--max-frames must be >= 1, got {max_frames!r}")
    if fps is not None and not 0 < fps < 1000:
        raise UsageError(f"--fps must be in (0, 1000), got {fps!r}")
    events = plan_prompts(targets, entries)
    if everything:
        from .everything import MaskGenerator

        MaskGenerator(None, **(everything_settings or {}))  # settings checked before any work
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_source(source))
        frames = iter(src)
        first = next(frames, None)
        if first is None:
            raise DataError(f"{src.kind} {src.name}: no frame could be read")
        h, w = first[1].shape[:2]
        for e in events:
            if e.target is not None:
                e.target.check_inside(w, h)
        video = stack.enter_context(VideoWriter(out, fps or src.fps or DEFAULT_FPS))
        lines = stack.enter_context(JsonlWriter(masks)) if masks is not None else None
        predictor = EdgePredictor.from_bundle(bundle, backend=backend, precision=precision, threads=threads,
                                              tuning=tuning)
        stage: Any = (EverythingStage(predictor, dict(everything_settings or {})) if everything
                      else TrackStage(predictor, events))
        total = src.frame_count
        if max_frames is not None:
            total = max_frames if total is None else min(total, max_frames)
        stream: Iterable[Any] = itertools.islice(itertools.chain([first], frames), max_frames)
        if realtime and not src.live:  # a file: deliver frames at its frame rate, as a camera would
            stream = paced(stream, fps or src.fps or DEFAULT_FPS)
        # real-time: one embedding waiting at most, so what is decoded is as fresh as it can be
        pipe = Pipeline(stream, predictor.encode, stage, _Sink(video, lines), realtime=realtime,
                        queue_size=1 if realtime else 2, encoders=predictor.tuning.encode_requests)
        report = None if progress is None else (lambda done, rate, dropped: progress(done, total, rate, dropped))
        interrupted = False
        try:
            stats = pipe.run(progress=report)
        except KeyboardInterrupt:
            stats, interrupted = pipe.stats, True
    objects = ({k: stage.tracker.state(k) for k in stage.tracker.objects} if isinstance(stage, TrackStage) else {})
    return {
        "source": str(source), "out": str(out), "masks": None if masks is None else str(masks),
        "mode": EVERYTHING if everything else "track", **stats.to_dict(), "objects": objects,
        "frame_size": [int(h), int(w)], "backend": predictor.backend, "precision": predictor.precision,
        "tuning": predictor.tuning.to_dict(), "realtime": bool(realtime), "interrupted": interrupted,
    }
