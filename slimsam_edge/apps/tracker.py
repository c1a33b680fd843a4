"""Track objects through a video with an :class:`~slimsam_edge.predictor.EdgePredictor` (no torch).

Each object is prompted on the next frame from its previous mask: a box around that mask (with a
margin), an interior positive point (the peak of the mask's distance transform) and, while it is
confidently tracked, the previous low-resolution logits as ``mask_input``. All objects of a frame
share one encoder run and one batched decoder call (:meth:`EdgePredictor.predict_batch`). A
confidence gate (:class:`TrackGate`: predicted IoU, stability score, area change, position change)
gives each object a state: ``tracking``, ``uncertain``, or ``lost``. A lost object is not decoded
again until it is given a new prompt: by the ``reacquire`` callback (a detector's boxes, an
oracle), or by ``update(frame, prompts={id: Prompt(...)})``.

Memory per object is constant: the previous low-res logits, a box, a point, a few numbers and the
latest result; no frame history is kept (the last frame's embedding is cached, one frame).

Example (a stand-in segmenter: bright pixels connected to the prompt; see the tests for real models):
    >>> import numpy as np
    >>> from slimsam_edge.apps.tracker import Tracker, Prompt, demo_predictor
    >>> def frame(x):  # a 20x20 white square at column x on a black 96x128 frame
    ...     f = np.zeros((96, 128, 3), np.uint8); f[30:50, x:x + 20] = 255; return f
    >>> tracker = Tracker(demo_predictor())
    >>> tracker.add_object(frame(10), points=[[20, 40]])
    1
    >>> for x in (14, 18, 22):
    ...     r = tracker.update(frame(x))[1]
    >>> r.state, r.bbox
    ('tracking', (22, 30, 20, 20))
    >>> tracker.update(np.zeros((96, 128, 3), np.uint8))[1].state   # gone: an empty mask
    'lost'
    >>> tracker.update(frame(60), prompts={1: Prompt(box=[55, 25, 85, 55])})[1].bbox
    (60, 30, 20, 20)
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import cv2
import numpy as np

from ..errors import ImageError, PromptError, UsageError
from ..predictor import ExclusiveUse
from .everything import stability_score

TRACKING, UNCERTAIN, LOST = "tracking", "uncertain", "lost"
STATES = (TRACKING, UNCERTAIN, LOST)

#: ``reacquire(frame, lost_ids) -> {id: Prompt}``: new prompts for (some of) the lost objects
Reacquire = Callable[[Any, list], Mapping[int, "Prompt"]]


@dataclass(frozen=True, eq=False)
class Prompt:
    """A prompt for one object: points (Nx2 x, y pixels) + labels (N: 1 foreground, 0 background;
    default all 1), a box (x0, y0, x1, y1), and/or a mask (HxW bool; used as its box and interior
    point). At least one of them. Whether it lies inside the frame is checked by the predictor.

    Example:
        >>> Prompt(points=[[10, 20]]).labels.tolist()
        [1]
        >>> Prompt()
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.PromptError: a Prompt needs points, a box or a mask (none given)
    """

    points: Any = None
    labels: Any = None
    box: Any = None
    mask: Any = None

    def __post_init__(self) -> None:
        points, labels, box, mask = self.points, self.labels, self.box, self.mask
        if points is None and box is None and mask is None:
            raise PromptError("a Prompt needs points, a box or a mask (none given)")
        if points is not None:
            points = np.asarray(points, dtype=np.float64)
            if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
                raise PromptError(f"Prompt points must have shape (N, 2) (x, y), got {points.shape}")
            labels = np.ones(len(points), np.int64) if labels is None else np.asarray(labels).reshape(-1)
            if labels.shape != (len(points),) or not np.isin(labels, (0, 1)).all():
                raise PromptError(f"Prompt labels must be {len(points)} values 1 (foreground) or 0 (background)")
        elif labels is not None:
            raise PromptError("Prompt labels given without points")
        if box is not None:
            box = np.asarray(box, dtype=np.float64).reshape(-1)
            if box.shape != (4,):
                raise PromptError(f"Prompt box must be 4 numbers x0, y0, x1, y1, got {box.shape[0]}")
        if mask is not None:
            mask = np.asarray(mask).astype(bool)
            if mask.ndim != 2:
                raise PromptError(f"Prompt mask must be an HxW array, got shape {mask.shape}")
            if not mask.any():
                raise PromptError("Prompt mask is empty; give a mask with at least one pixel set")
        for name, value in (("points", points), ("labels", labels), ("box", box), ("mask", mask)):
            object.__setattr__(self, name, value)


@dataclass(frozen=True, eq=False)
class TrackResult:
    """One object on one frame: ``mask`` (HxW bool), ``score`` (predicted IoU; 0 when lost),
    ``state`` (tracking / uncertain / lost), ``bbox`` ((x, y, w, h) ints, ``None`` when empty)."""

    mask: np.ndarray
    score: float
    state: str
    bbox: tuple[int, int, int, int] | None


@dataclass
class TrackGate:
    """When a tracked mask is trusted.

    A new mask is *uncertain* when its predicted IoU is below ``min_score``, its stability score
    (IoU of the mask at logit thresholds +1 and -1) below ``min_stability``, it covers more than
    ``max_area_frac`` of the frame, or it jumped since the last trusted (``tracking``) mask: its
    area changed by more than a factor ``max_area_change``, or its centroid moved more than
    ``max_shift`` times the square root of the larger of the two areas (the larger: an object coming
    out from behind another grows fast, and its centroid moves with the part that appears). An
    object uncertain for more than ``max_uncertain`` frames in a row, or whose mask has fewer than
    ``min_area`` pixels, is *lost*. The first mask of a prompt is judged by score, stability and
    size only. (A mask that jumps to an occluder and stays there stays uncertain, then is lost: it
    is compared with the last trusted mask, not with the previous frame's.)

    Example:
        >>> TrackGate(min_score=0.8).max_uncertain
        3
    """

    min_score: float = 0.5
    min_stability: float = 0.6
    max_area_change: float = 2.0
    max_shift: float = 0.6
    max_area_frac: float = 0.8
    min_area: int = 16
    max_uncertain: int = 3

    def __post_init__(self) -> None:
        for name in ("min_score", "min_stability", "max_area_frac"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"TrackGate.{name} must be in [0, 1], got {value!r}")
        if not self.max_area_change >= 1.0:
            raise UsageError(f"TrackGate.max_area_change must be >= 1, got {self.max_area_change!r}")
        if not self.max_shift > 0:
            raise UsageError(f"TrackGate.max_shift must be > 0, got {self.max_shift!r}")
        if self.min_area < 1 or self.max_uncertain < 0:
            raise UsageError("TrackGate.min_area must be >= 1 and max_uncertain >= 0")


# ---------------------------------------------------------------------------------- mask geometry
def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` of the pixels set in ``mask``, ``None`` when it is empty.

    Example:
        >>> m = np.zeros((6, 8), bool); m[1:3, 2:7] = True
        >>> mask_bbox(m), mask_bbox(m[:0])
        ((2, 1, 5, 2), None)
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def interior_point(mask: np.ndarray, bbox: tuple[int, int, int, int] | None = None) -> tuple[float, float]:
    """The pixel (x, y) of ``mask`` farthest from its boundary (peak of the distance transform;
    the frame's edge counts as boundary), at the pixel centre. ``mask`` must not be empty.

    Example:
        >>> m = np.zeros((9, 12), bool); m[2:7, 1:10] = True
        >>> interior_point(m)
        (5.5, 4.5)
    """
    x, y, w, h = bbox or mask_bbox(mask)  # type: ignore[misc]
    crop = np.zeros((h + 2, w + 2), np.uint8)
    crop[1:-1, 1:-1] = mask[y:y + h, x:x + w]
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, 5)
    rows, cols = np.nonzero(dist >= dist.max() - 1e-3)  # a ridge of peaks: the one nearest its middle
    i = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    return float(x + cols[i] - 1) + 0.5, float(y + rows[i] - 1) + 0.5


def grow_box(bbox: tuple[int, int, int, int], size: tuple[int, int], margin: float,
             min_px: float = 4.0) -> np.ndarray:
    """``x0, y0, x1, y1`` of ``bbox`` (x, y, w, h) grown by ``margin`` of its size (at least
    ``min_px``) on each side, clipped to the frame ``size`` (h, w).

    Example:
        >>> grow_box((10, 10, 20, 40), (100, 100), 0.1).tolist()
        [6.0, 6.0, 34.0, 54.0]
        >>> grow_box((0, 90, 20, 10), (100, 100), 0.1).tolist()
        [0.0, 86.0, 24.0, 100.0]
    """
    x, y, w, h = bbox
    mx, my = max(margin * w, min_px), max(margin * h, min_px)
    hh, ww = size
    return np.array([max(0.0, x - mx), max(0.0, y - my), min(float(ww), x + w + mx), min(float(hh), y + h + my)])


# ---------------------------------------------------------------------------------- tracker
@dataclass(eq=False)
class _Track:
    """One object's state: O(1) memory (no history)."""

    state: str
    result: TrackResult
    box: np.ndarray | None = None           # next frame's box prompt
    point: tuple[float, float] | None = None  # next frame's positive point
    logits: np.ndarray | None = None        # next frame's mask_input (LxL), None when not trusted
    ref_area: float = 0.0                   # last trusted mask's area / centroid
    ref_centroid: tuple[float, float] = (0.0, 0.0)
    uncertain: int = 0                      # consecutive uncertain frames
    stats: dict = field(default_factory=dict)


@dataclass
class _Job:
    """One decoder prompt: ``points`` Nx2 / ``labels`` N (or None), ``box`` (or None), ``logits``."""

    obj_id: int
    points: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None
    logits: np.ndarray | None
    fresh: bool


def _one_thread(method: Callable) -> Callable:
    """Run a :class:`Tracker` method under its guard: a second thread is refused, not raced."""

    @functools.wraps(method)
    def guarded(self: "Tracker", *args: Any, **kwargs: Any) -> Any:
        with self._busy:
            return method(self, *args, **kwargs)

    return guarded


class Tracker:
    """Track several objects through frames with one encoder run and one batched decoder call each.

    Arguments:
        predictor: an :class:`~slimsam_edge.predictor.EdgePredictor` whose decoder takes batched
            prompts (a bundle exported before them is refused: re-export it).
        gate: the :class:`TrackGate` thresholds (default: ``TrackGate()``).
        reacquire: ``reacquire(frame, lost_ids) -> {id: Prompt}``, called on each :meth:`update`
            while objects are lost (before decoding; e.g. a detector's boxes for them).
        margin: relative margin of the box around the previous mask.
        multimask: ``None`` (default): three masks for prompts without a box (a click is
            ambiguous: the best predicted IoU is kept) and the single-mask output for prompts with
            a box (every tracked object; it followed objects better, see docs/results/video.md);
            ``True``: three masks always, keeping the one that best agrees with the previous mask
            and its predicted IoU; ``False``: the single-mask output always.
        mask_input: feed the previous frame's low-res logits as the decoder's ``mask_input``.

    Threads: a Tracker uses its predictor's decoder side (:meth:`EdgePredictor.set_embedding`,
    ``predict_batch``): use it from one thread (a second thread inside :meth:`add_object`,
    :meth:`remove_object` or :meth:`update` at the same time gets ConcurrentUseError); another
    thread may :meth:`~EdgePredictor.encode` the next frame and pass the embedding to :meth:`update`.

    Illustration (not run as a doctest: it needs a bundle)::

        tracker = Tracker(EdgePredictor.from_bundle("bundle/"))
        first = tracker.add_object(frames[0], box=[40, 60, 120, 200])
        for frame in frames[1:]:
            for obj_id, r in tracker.update(frame).items():
                print(obj_id, r.state, r.score, r.bbox)
    """

    def __init__(self, predictor: Any, *, gate: TrackGate | None = None, reacquire: Reacquire | None = None,
                 margin: float = 0.1, multimask: bool | None = None, mask_input: bool = True):
        predictor.check_prompt_axis()
        if not 0.0 <= margin <= 2.0:
            raise UsageError(f"margin must be in [0, 2] (a fraction of the box size), got {margin!r}")
        self.predictor = predictor
        self.gate = gate or TrackGate()
        self.reacquire = reacquire
        self.margin = float(margin)
        self.multimask = None if multimask is None else bool(multimask)
        self.mask_input = bool(mask_input)
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._size: tuple[int, int] | None = None
        self._cache: tuple[Any, Any] | None = None  # (key of the last frame, its embedding)
        self.frames = 0
        self._busy = ExclusiveUse("this Tracker", "call add_object / remove_object / update from one thread "
                                  "(e.g. a Pipeline's process stage); another thread may encode frames "
                                  "(EdgePredictor.encode) and pass the embedding to update()")

    # ------------------------------------------------------------------ objects
    @property
    def objects(self) -> list[int]:
        """Ids of the objects tracked (any state), ascending."""
        return sorted(self._tracks)

    def state(self, obj_id: int) -> str:
        """``tracking``, ``uncertain`` or ``lost``."""
        return self._track(obj_id).state

    @property
    def results(self) -> dict[int, TrackResult]:
        """Each object's latest result (of :meth:`add_object` or :meth:`update`)."""
        return {k: self._tracks[k].result for k in self.objects}

    @_one_thread
    def add_object(self, frame: Any, prompt: Prompt | None = None, *, points: Any = None, labels: Any = None,
                   box: Any = None, mask: Any = None, obj_id: int | None = None, embedding: Any = None) -> int:
        """Start tracking an object prompted on ``frame``; returns its id (1, 2, ... unless
        ``obj_id`` is given). Its mask on ``frame`` is ``tracker.results[id]``; the next
        :meth:`update` takes the next frame. Adding several objects to one frame encodes it once.

        Raises:
            UsageError: ``obj_id`` is already tracked, or both ``prompt`` and keywords are given.
            PromptError: a malformed prompt, or one outside the frame.
        """
        given = any(v is not None for v in (points, labels, box, mask))
        if prompt is not None and given:
            raise UsageError("give either a Prompt or points/labels/box/mask keywords, not both")
        if prompt is None:
            prompt = Prompt(points=points, labels=labels, box=box, mask=mask)
        elif not isinstance(prompt, Prompt):
            raise UsageError(f"prompt must be a Prompt, not {type(prompt).__name__}")
        if obj_id is None:
            while self._next_id in self._tracks:
                self._next_id += 1
            obj_id = self._next_id
        elif not isinstance(obj_id, (int, np.integer)) or isinstance(obj_id, bool) or obj_id < 1:
            raise UsageError(f"object ids are integers >= 1, got {obj_id!r}")
        elif obj_id in self._tracks:
            raise UsageError(f"object id {obj_id} is already tracked; remove_object({obj_id}) first "
                             "or pass another obj_id")
        obj_id = int(obj_id)
        self._activate(frame, embedding)
        job = self._fresh_job(obj_id, prompt)
        empty = self._lost_result()
        track = _Track(state=LOST, result=empty)
        self._tracks[obj_id] = track
        try:
            self._run([job])
        except BaseException:
            del self._tracks[obj_id]
            raise
        self._next_id = max(self._next_id, obj_id + 1)
        return obj_id

    @_one_thread
    def remove_object(self, obj_id: int) -> None:
        """Stop tracking ``obj_id`` (its state is dropped)."""
        self._track(obj_id)
        del self._tracks[obj_id]

    # ------------------------------------------------------------------ frames
    @_one_thread
    def update(self, frame: Any, *, embedding: Any = None,
               prompts: Mapping[int, Prompt] | None = None) -> dict[int, TrackResult]:
        """Track every object into ``frame`` (HxWx3 uint8 RGB; may be ``None`` when ``embedding``,
        its :meth:`EdgePredictor.encode`, is given). ``prompts`` re-prompts objects (lost or not).

        Returns each object's :class:`TrackResult` (lost ones with an empty mask), by id.

        Raises:
            ImageError: the frame's size differs from the first frame's.
            UsageError: a prompt names an unknown object id.
            PromptError: a prompt is malformed or outside the frame.
        """
        explicit = dict(self._checked_prompts(prompts, "prompts"))
        self.frames += 1
        if not self._tracks:  # nothing to track: no encoder run
            if frame is not None:
                self._check_size(np.shape(frame)[:2], "frame")
            return {}
        self._activate(frame, embedding)
        lost = [k for k in self.objects if self._tracks[k].state == LOST and k not in explicit]
        if lost and self.reacquire is not None:
            for k, p in self._checked_prompts(self.reacquire(frame, list(lost)), "reacquire").items():
                explicit.setdefault(k, p)
        jobs = []
        for k in self.objects:
            t = self._tracks[k]
            if k in explicit:
                jobs.append(self._fresh_job(k, explicit[k]))
            elif t.state != LOST:
                jobs.append(_Job(k, np.array([t.point]), np.ones(1), t.box, t.logits, fresh=False))
            else:
                t.result = self._lost_result()
        self._run(jobs)
        return self.results

    # ------------------------------------------------------------------ internals
    def _track(self, obj_id: Any) -> _Track:
        try:
            return self._tracks[obj_id]
        except (KeyError, TypeError):
            ids = ", ".join(map(str, self.objects)) or "none"
            raise UsageError(f"unknown object id {obj_id!r}; tracked ids: {ids}") from None

    def _checked_prompts(self, prompts: Any, where: str) -> dict[int, Prompt]:
        if prompts is None:
            return {}
        if not isinstance(prompts, Mapping):
            raise UsageError(f"{where} must be a mapping {{object id: Prompt}}, not {type(prompts).__name__}")
        for k, p in prompts.items():
            self._track(k)
            if not isinstance(p, Prompt):
                raise UsageError(f"{where}[{k}] must be a Prompt, not {type(p).__name__}")
        return dict(prompts)

    def _activate(self, frame: Any, embedding: Any) -> None:
        """Make ``frame``'s embedding the predictor's current image (encoding it unless given or
        it is the frame encoded last); refuse a frame of another size."""
        if frame is not None:
            if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
                raise ImageError(f"expected an HxWx3 frame array, got shape {getattr(frame, 'shape', None)}")
            self._check_size(frame.shape[:2], "frame")
        elif embedding is None:
            raise UsageError("update() needs a frame, or its embedding (embedding=predictor.encode(frame))")
        if embedding is None:
            key = (frame.shape, frame.dtype.str, zlib.crc32(np.ascontiguousarray(frame)))
            if self._cache is not None and self._cache[0] == key:
                embedding = self._cache[1]
            else:
                embedding = self.predictor.encode(frame)
                self._cache = (key, embedding)
        else:
            self._check_size(tuple(embedding.original_size), "embedding of a frame")
        self.predictor.set_embedding(embedding)

    def _check_size(self, hw: tuple[int, ...], what: str) -> None:
        hw = (int(hw[0]), int(hw[1]))
        if self._size is None:
            self._size = hw
        elif hw != self._size:
            raise ImageError(f"{what} is {hw[1]}x{hw[0]} but this video's frames are {self._size[1]}x{self._size[0]}; "
                             "frames must not change size mid-stream (start a new Tracker)")

    def _lost_result(self) -> TrackResult:
        h, w = self._size or (0, 0)
        return TrackResult(np.zeros((h, w), bool), 0.0, LOST, None)

    def _fresh_job(self, obj_id: int, prompt: Prompt) -> _Job:
        """A prompt given by the user or ``reacquire``: validated by the predictor (in the frame)."""
        points, labels, box = prompt.points, prompt.labels, prompt.box
        if prompt.mask is not None:
            if prompt.mask.shape != self._size:
                raise PromptError(f"object {obj_id}: the mask prompt is {prompt.mask.shape[1]}x{prompt.mask.shape[0]}, "
                                  f"the frame {self._size[1]}x{self._size[0]}")  # type: ignore[index]
            bbox = mask_bbox(prompt.mask)
            if box is None:
                box = grow_box(bbox, self._size, 0.0, min_px=1.0)  # type: ignore[arg-type]
            if points is None:
                points, labels = np.array([interior_point(prompt.mask, bbox)]), np.ones(1)
        try:
            self.predictor.batch_feed(None if points is None else points[None], None if labels is None else labels[None],
                                      None if box is None else box[None])
        except PromptError as err:
            raise PromptError(f"object {obj_id}: {err}".replace("points[0]", "point").replace("boxes[0]", "box")) from None
        return _Job(obj_id, points, labels, box, None, fresh=True)

    def _run(self, jobs: list[_Job]) -> None:
        """Decode ``jobs`` (one predict_batch per kind: with boxes, without; normally one) and judge."""
        for group in ([j for j in jobs if j.box is not None], [j for j in jobs if j.box is None]):
            if not group:
                continue
            masks, scores, low = self._predict(group)
            for i, job in enumerate(group):
                self._judge(job, masks[i], scores[i], low[i])

    def _predict(self, jobs: list[_Job]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b, n = len(jobs), max((0 if j.points is None else len(j.points)) for j in jobs)
        points = labels = boxes = mask_inputs = None
        if n:
            points, labels = np.zeros((b, n, 2)), -np.ones((b, n))
            for i, j in enumerate(jobs):
                if j.points is not None:
                    points[i, :len(j.points)], labels[i, :len(j.points)] = j.points, j.labels
        if jobs[0].box is not None:
            boxes = np.stack([j.box for j in jobs])
        if any(j.logits is not None for j in jobs):
            mask_inputs = [j.logits for j in jobs]
        multi = boxes is None if self.multimask is None else self.multimask
        return self.predictor.predict_batch(points, labels, boxes, mask_inputs, multimask_output=multi)

    def _judge(self, job: _Job, masks: np.ndarray, scores: np.ndarray, low: np.ndarray) -> None:
        """Pick one of the decoder's masks for ``job``, gate it, and set the object's next prompt."""
        t, g = self._tracks[job.obj_id], self.gate
        k = 0
        if len(scores) > 1:
            rank = scores.astype(np.float64)
            if not job.fresh and job.logits is not None:  # agreement with the previous mask
                prev = job.logits > 0
                cand = low > 0
                inter = (cand & prev).sum(axis=(1, 2))
                union = (cand | prev).sum(axis=(1, 2))
                rank = rank + inter / np.maximum(union, 1)
            k = int(np.argmax(rank))
        mask, score, logits = masks[k], float(scores[k]), low[k]
        bbox = mask_bbox(mask)
        area = float(mask.sum())
        if bbox is None or area < g.min_area:
            self._set_lost(t, score)
            return
        stab = float(np.nan_to_num(stability_score(logits[None], 0.0, 1.0)[0]))  # empty: 0
        if job.fresh:
            t.uncertain = 0
        ys, xs = np.nonzero(mask)
        centroid = (float(xs.mean()), float(ys.mean()))
        ok = score >= g.min_score and stab >= g.min_stability and area <= g.max_area_frac * mask.size
        ratio = shift = None
        if not job.fresh and t.ref_area > 0:  # against the last trusted mask
            ratio = area / t.ref_area
            shift = float(np.hypot(centroid[0] - t.ref_centroid[0], centroid[1] - t.ref_centroid[1])
                          / np.sqrt(max(area, t.ref_area)))
            ok = ok and 1.0 / g.max_area_change <= ratio <= g.max_area_change and shift <= g.max_shift
        t.stats = {"score": score, "stability": stab, "area": area, "area_ratio": ratio, "shift": shift}
        if ok or job.fresh or t.ref_area == 0:
            t.ref_area, t.ref_centroid = area, centroid
        if ok:
            t.state, t.uncertain = TRACKING, 0
            t.logits = logits.copy() if self.mask_input else None
        else:
            t.uncertain += 1
            if t.uncertain > g.max_uncertain:
                self._set_lost(t, score)
                return
            t.state, t.logits = UNCERTAIN, None
        t.box = grow_box(bbox, mask.shape, self.margin)
        t.point = interior_point(mask, bbox)
        t.result = TrackResult(mask, score, t.state, bbox)

    def _set_lost(self, t: _Track, score: float) -> None:
        t.state, t.uncertain, t.logits, t.box, t.point, t.ref_area = LOST, 0, None, None, None, 0.0
        t.result = self._lost_result()


# ---------------------------------------------------------------------------------- demo segmenter
def demo_predictor(image_size: int = 256) -> Any:
    """An :class:`~slimsam_edge.predictor.EdgePredictor` over stand-in runners that segment bright
    pixels (> 127 in the red channel) connected to the prompt: the object under the points, else the
    largest bright region inside the box. For examples and tests of the tracking logic.

    Example:
        >>> p = demo_predictor()
        >>> img = np.zeros((64, 64, 3), np.uint8); img[8:24, 8:40] = 255
        >>> p.set_image(img)
        >>> masks, scores, _ = p.predict(np.array([[20, 16]]), np.array([1]))
        >>> int(masks[0].sum()), [round(float(s), 2) for s in scores]
        (512, [0.95, 0.9, 0.5])
    """
    from ..predictor import EdgePredictor
    from ..runtimes.base import TensorSpec

    side = image_size // 4  # low-res mask side; the "embedding" is the bright map pixel-shuffled

    class Encoder:
        def infer(self, feed: dict) -> dict:
            bright = feed["image"][0, 0] > 127.0
            low = bright.reshape(side, 4, side, 4).any(axis=(1, 3))
            return {"image_embeddings": low.reshape(side // 4, 4, side // 4, 4).transpose(1, 3, 0, 2)
                    .reshape(1, 16, side // 4, side // 4).astype(np.float32)}

        def activate(self) -> None: ...

        def deactivate(self) -> None: ...

    class Decoder(Encoder):
        def input_specs(self) -> dict:
            return {"point_coords": TensorSpec("point_coords", np.dtype(np.float32), ("prompts", "points", 2))}

        def max_prompts(self) -> None:
            return None

        def infer(self, feed: dict) -> dict:
            g = side // 4
            bright = (feed["image_embeddings"][0].reshape(4, 4, g, g).transpose(2, 0, 3, 1).reshape(side, side) > 0)
            n, comp = cv2.connectedComponents(bright.astype(np.uint8), connectivity=4)
            out = []
            for coords, labels in zip(feed["point_coords"] / 4.0, feed["point_labels"]):
                pick = 0
                for (x, y), lab in zip(coords, labels):
                    if lab == 1 and 0 <= int(y) < side and 0 <= int(x) < side and comp[int(y), int(x)]:
                        pick = comp[int(y), int(x)]
                box = coords[labels >= 2]
                if not pick and len(box) == 2:
                    (x0, y0), (x1, y1) = np.floor(box[0]).astype(int), np.ceil(box[1]).astype(int)
                    counts = np.bincount(comp[max(y0, 0):y1, max(x0, 0):x1].ravel(), minlength=n)
                    counts[0] = 0
                    pick = int(np.argmax(counts)) if counts.any() else 0
                m = np.where((comp == pick) & (pick > 0), 10.0, -10.0).astype(np.float32)
                out.append(np.stack([m, m, m, np.full_like(m, -10.0)]))
            b = len(out)
            return {"low_res_masks": np.stack(out), "iou_predictions": np.tile(np.float32([0.95, 0.95, 0.9, 0.5]), (b, 1))}

    return EdgePredictor(Encoder(), Decoder(), image_size=image_size, pixel_mean=(0.0, 0.0, 0.0),
                         pixel_std=(1.0, 1.0, 1.0))
