"""What one benchmark query is: ``click``, ``video`` or ``everything`` (``bench --scenario``).

Each scenario is a small class in :data:`SCENARIOS`; it runs inside the benchmark's worker process
on an activated :class:`~slimsam_edge.predictor.EdgePredictor` and returns its latencies per
stage (seconds), its counts, and its energy (an
:class:`~slimsam_edge.devices.energy.EnergyReading` per measured part, ``None`` joules with the
reason where the machine has no energy source).

- ``click``: one encoder run (preprocess + encoder) then ``prompts`` single-point prompts (decoder
  + postprocess), repeated SingleStream-style: at least ``min_queries`` images and ``duration_s``
  seconds. Joules per image and per prompt.
- ``video``: a procedural clip with ``objects`` objects (default 3) through the camera pipeline
  (:class:`~slimsam_edge.apps.pipeline.Pipeline`: capture, encode, track, sink threads; as many
  encode threads as the predictor's ``tuning.encode_requests``), every frame kept;
  capture-to-mask latency per frame, fps, drops. Joules per frame.
- ``everything``: segment everything (:class:`~slimsam_edge.apps.everything.MaskGenerator`,
  ``points_per_side`` grid) per image; latency per image and masks found. Joules per image.

Illustration (not run as a doctest: it needs files or a model)::

    result = SCENARIOS["click"]().run(predictor, cfg, image, open_meter("auto"))
    result["stages"]["encoder"][:2], result["energy"]["per_image"]
"""

from __future__ import annotations

import time
from typing import Any, Callable, ClassVar

import numpy as np

from ..devices.energy import EnergyMeter, EnergyReading, energy_per
from ..errors import UsageError
from .stats import single_stream

Tick = Callable[[], None]


def _energy(reading: EnergyReading, count: int) -> dict[str, Any]:
    return {**reading.to_dict(), "count": count, "joules_per_item": energy_per(reading, count)}


class Scenario:
    """One kind of query. ``run`` returns ``{"stages": {stage: [seconds]}, "counts": {...},
    "energy": {part: {...}}, "extra": {...}}``."""

    name: ClassVar[str] = ""
    #: the stages this scenario reports, in table order
    stages: ClassVar[tuple[str, ...]] = ()
    #: the stage whose p50 a table shows first and % of peak is computed from (None: none)
    headline: ClassVar[str | None] = None

    def run(self, pred: Any, cfg: Any, image: np.ndarray, meter: EnergyMeter, tick: Tick) -> dict[str, Any]:
        raise NotImplementedError


class Click(Scenario):
    """Encoder once per image, then ``cfg.prompts`` one-point prompts on it."""

    name = "click"
    stages = ("preprocess", "encoder", "decoder", "postprocess", "decoder_plus_postprocess")
    headline = "encoder"

    def run(self, pred: Any, cfg: Any, image: np.ndarray, meter: EnergyMeter, tick: Tick) -> dict[str, Any]:
        for _ in range(cfg.warmup):
            pred.set_image(image)
            pred.predict(np.array([[image.shape[1] / 2, image.shape[0] / 2]]), np.ones(1), multimask_output=True)
        pre: list[float] = []
        enc: list[float] = []

        def encode() -> float:
            pred.set_image(image)
            pre.append(pred.timings["preprocess"])
            enc.append(pred.timings["encoder"])
            return pred.timings["preprocess"] + pred.timings["encoder"]

        meter.start()
        single_stream(encode, min_queries=cfg.runs, min_duration_s=cfg.duration_s, tick=tick)
        e_images = meter.stop()
        rng = np.random.default_rng(cfg.seed)
        h, w = image.shape[:2]
        dec: list[float] = []
        post: list[float] = []
        total: list[float] = []

        def prompt() -> float:
            pts = np.stack([rng.uniform(0, w, cfg.points), rng.uniform(0, h, cfg.points)], axis=1)
            t = time.perf_counter()
            pred.predict(pts, np.ones(cfg.points), multimask_output=True)
            dt = time.perf_counter() - t
            dec.append(pred.timings["decoder"])
            post.append(pred.timings["postprocess"])
            total.append(dt)
            return dt

        meter.start()
        single_stream(prompt, min_queries=cfg.prompts, min_duration_s=cfg.duration_s / 4, tick=tick)
        e_prompts = meter.stop()
        return {"stages": {"preprocess": pre, "encoder": enc, "decoder": dec, "postprocess": post,
                           "decoder_plus_postprocess": total},
                "counts": {"images": len(enc), "prompts": len(dec)},
                "energy": {"per_image": _energy(e_images, len(enc)), "per_prompt": _energy(e_prompts, len(dec))},
                "extra": {}}


class Video(Scenario):
    """A procedural clip through the capture -> encode -> track -> sink pipeline."""

    name = "video"
    stages = ("frame",)
    headline = "frame"

    def run(self, pred: Any, cfg: Any, image: np.ndarray, meter: EnergyMeter, tick: Tick) -> dict[str, Any]:
        from ..apps.pipeline import Pipeline
        from ..apps.tracker import Tracker, interior_point
        from ..apps.video_eval import MIN_VISIBLE
        from ..data.synth_video import ProceduralVideo

        frames = max(cfg.runs, 2) + cfg.warmup
        video = ProceduralVideo(seed=cfg.seed, frames=frames + 1, size=tuple(cfg.image_hw), objects=cfg.objects)
        clip = list(video)
        tracker = Tracker(pred)
        first = clip[0]
        for k in video.object_ids:
            if int(np.count_nonzero(first.mask(k))) >= MIN_VISIBLE:
                tracker.add_object(first.image, points=[interior_point(first.mask(k))], obj_id=int(k))
        if not tracker.objects:
            raise UsageError("the procedural clip's first frame has no visible object; pick another --seed")
        for f in clip[1:1 + cfg.warmup]:
            tracker.update(f.image)
        latencies: list[float] = []
        seen: dict[int, float] = {}
        timed = [(f.index, f.image) for f in clip[1 + cfg.warmup:]]

        def source() -> Any:
            for i, img in timed:
                seen[i] = time.perf_counter()
                yield i, img

        def sink(i: int, frame: Any, result: Any) -> None:
            latencies.append(time.perf_counter() - seen.pop(i))
            tick()

        meter.start()
        encoders = pred.tuning.encode_requests
        stats = Pipeline(source(), pred.encode, lambda i, f, emb: tracker.update(f, embedding=emb), sink,
                         realtime=False, encoders=encoders).run()
        reading = meter.stop()
        d = stats.to_dict()
        return {"stages": {"frame": latencies}, "counts": {"frames": d["frames_done"], "dropped": d["dropped"],
                                                           "objects": len(tracker.objects)},
                "energy": {"per_frame": _energy(reading, d["frames_done"])},
                "extra": {"fps": d["fps"], "pipeline_seconds": d["seconds"], "encoders": encoders}}


class Everything(Scenario):
    """Segment everything on the image, ``cfg.points_per_side`` points per side."""

    name = "everything"
    stages = ("everything",)
    headline = "everything"

    def run(self, pred: Any, cfg: Any, image: np.ndarray, meter: EnergyMeter, tick: Tick) -> dict[str, Any]:
        from ..apps.everything import MaskGenerator

        gen = MaskGenerator(pred, points_per_side=cfg.points_per_side)
        for _ in range(cfg.warmup):
            gen.generate(image)
        found: list[int] = []

        def query() -> float:
            t = time.perf_counter()
            found.append(len(gen.generate(image)))
            return time.perf_counter() - t

        meter.start()
        lat = single_stream(query, min_queries=cfg.runs, min_duration_s=cfg.duration_s, tick=tick)
        reading = meter.stop()
        return {"stages": {"everything": lat}, "counts": {"images": len(lat), "masks_median": int(np.median(found))},
                "energy": {"per_image": _energy(reading, len(lat))},
                "extra": {"points_per_side": cfg.points_per_side}}


SCENARIOS: dict[str, type[Scenario]] = {s.name: s for s in (Click, Video, Everything)}


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``.

    Example:
        >>> get_scenario("click").headline
        'encoder'
        >>> get_scenario("drive")
        Traceback (most recent call last):
        ...
        slimsam_edge.errors.UsageError: unknown scenario 'drive'; choose click, video or everything
    """
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario {name!r}; choose click, video or everything")
    return SCENARIOS[name]()
