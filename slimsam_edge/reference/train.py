"""Train the reference model (sam-mini) from scratch on procedural data.

Step ``s`` uses images ``s*B .. s*B+B-1`` of the procedural set ``recipe.data_seed`` and a numpy
generator seeded with ``(recipe.seed, s)`` for prompts, so a run is reproducible and a resumed run
sees exactly the data it would have seen. Files written under ``out``:

- ``checkpoint.pt``: model, optimiser, scheduler, step, RNG state, best score (atomic);
- ``best.safetensors``: the weights with the best held-out point mIoU (via ``save_model``);
- ``log.jsonl``: one JSON object per logged step and per evaluation.

Illustration (not run as a doctest: it needs files or a model)::

    result = train(Recipe(steps=2000), "runs/sam-mini")
    result["best"]["point"]
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..compress.device import rank_device, resolve_device, tf32
from ..data.procedural import procedural_sample
from ..errors import CheckpointError, UsageError
from ..eval.evaluate import evaluate_sam
from ..fsutil import atomic_path
from ..models.batch import batch_loss
from ..models.build import build_sam
from ..models.io import save_model
from ..models.spec import ModelSpec, preset
from .card import read_log, start_event
from .recipe import Recipe

CHECKPOINT = "checkpoint.pt"
#: ``--init`` name of the weights shipped in the package
SHIPPED_INIT = "sam-mini"
BEST = "best.safetensors"
LOG = "log.jsonl"


def make_optimizer(sam: torch.nn.Module, recipe: Recipe) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (no weight decay on biases, norms and 1-D tables) + the recipe's LR schedule."""
    decay, no_decay = [], []
    for name, p in sam.named_parameters():
        (decay if p.ndim >= 2 and "pos_embed" not in name and "rel_pos" not in name else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr, betas=recipe.betas,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: recipe.lr_at(s) / recipe.lr)
    return opt, sched


class StepImages(torch.utils.data.Dataset):
    """Item ``i`` = the procedural samples of optimiser step ``start + i`` (a pure function of it)."""

    def __init__(self, recipe: Recipe, start: int):
        self.recipe, self.start = recipe, start

    def __len__(self) -> int:
        return max(0, self.recipe.steps - self.start)

    def __getitem__(self, i: int) -> list:
        r, step = self.recipe, self.start + i
        return [procedural_sample(r.data_seed, step * r.batch_images + k, r.image_size) for k in range(r.batch_images)]


def _as_is(item: Any) -> Any:
    return item


def _one_thread(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def step_images(recipe: Recipe, start: int, workers: int = 0):
    """Iterate the samples of steps ``start..steps-1``; ``workers`` > 0 generates them in that many
    processes ahead of the training loop (same images in the same order). The workers are spawned,
    not forked: a fork after CUDA, OpenMP or OpenCV threads have started can deadlock.

    Example:
        >>> batches = step_images(Recipe(steps=3, batch_images=2), start=2)
        >>> [len(b) for b in batches]
        [2]
    """
    data = StepImages(recipe, start)
    if workers <= 0:
        return (data[i] for i in range(len(data)))
    return iter(torch.utils.data.DataLoader(data, batch_size=None, shuffle=False, num_workers=workers,
                                            collate_fn=_as_is, prefetch_factor=4, worker_init_fn=_one_thread,
                                            multiprocessing_context="spawn"))


def _log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _save_checkpoint(path: Path, sam: torch.nn.Module, opt: Any, sched: Any, step: int,
                     recipe: Recipe, best: dict[str, Any] | None, elapsed: float) -> None:
    state = {
        "model": sam.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "step": step, "recipe": recipe.to_json(), "best": best, "elapsed_s": elapsed,
        "torch_rng": torch.get_rng_state(), "numpy_rng": _np_state_to_tensors(np.random.get_state()),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _np_state_to_tensors(state: tuple) -> dict[str, Any]:
    """numpy's legacy RNG state as tensors and numbers, so ``weights_only=True`` can read it."""
    name, keys, pos, has_gauss, cached = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _np_state_from_tensors(d: dict[str, Any]) -> tuple:
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached"])


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged checkpoint is the user's file: one line
        raise CheckpointError(f"{path}: cannot read training checkpoint ({type(err).__name__}); "
                              "delete it or pass --no-resume") from None


def stage_of(meta: dict[str, str], card: dict[str, Any] | None = None) -> dict[str, Any]:
    """One lineage entry for weights with safetensors metadata ``meta`` (written by :func:`train`):
    their recipe, best step, device and training minutes (from ``card``, a ``MODEL_CARD.json``,
    where the metadata predates those fields).

    Example:
        >>> stage_of({"recipe": "{\\"steps\\": 5}", "best_step": "5", "device": "cpu", "minutes": "1.5"})
        {'recipe': {'steps': 5}, 'best_step': 5, 'device': 'cpu', 'minutes': 1.5}
    """
    training = (card or {}).get("training", {})
    minutes = meta.get("minutes", training.get("training_minutes"))
    return {"recipe": json.loads(meta.get("recipe", "{}")), "best_step": int(meta.get("best_step", "0")),
            "device": meta.get("device", training.get("device")),
            "minutes": None if minutes is None else float(minutes)}


def init_path(init: Path | str) -> Path:
    """The weights file ``--init`` names (``"sam-mini"``: the shipped one), or a one-line error."""
    from ..assets import require_reference_model

    path = require_reference_model() if str(init) == SHIPPED_INIT else Path(init)
    if path.suffix != ".safetensors" or not path.is_file():
        raise UsageError(f"--init {path}: not a .safetensors weights file; pass the best.safetensors of a run "
                         "or 'sam-mini' for the shipped weights")
    return path


def adopt_init_grid(recipe: Recipe, init: Path | str, base: ModelSpec) -> Recipe:
    """``recipe`` with the patch and window size of the ``init`` weights where it sets neither and
    they differ from ``base``'s, so that continuing a model keeps its token grid (and the recipe
    says so: the card's command then names it).

    Illustration (not run as a doctest: it needs files or a model)::

        adopt_init_grid(Recipe(), "sam-mini", preset("sam_mini")).patch_size
        # -> 8
    """
    from ..models.io import embedded_spec, read_metadata
    from ..models.regrid import GRID_FIELDS

    if any(getattr(recipe, k) for k in GRID_FIELDS):
        return recipe
    enc = (embedded_spec(read_metadata(init_path(init))) or base).encoder
    grid = {k: getattr(enc, k) for k in GRID_FIELDS}
    return recipe if all(getattr(base.encoder, k) == v for k, v in grid.items()) else replace(recipe, **grid)


def load_init(sam: torch.nn.Module, init: Path | str) -> dict[str, Any]:
    """Copy the weights in ``init`` (a safetensors file of the same architecture) into ``sam``.

    Weights of the same model on a coarser token grid (``sam`` built with a smaller patch and a
    window covering the same pixels) are moved to ``sam``'s grid first
    (:func:`slimsam_edge.models.regrid.regrid_state_dict`); the result then has a ``regrid`` entry,
    ``{"patch_size": [old, new], "window_size": [old, new]}``.

    Returns ``{"path", "sha256", "shipped", "lineage"}``: ``shipped`` says whether ``init`` is the
    packaged sam-mini; the lineage lists the training stages that made ``init`` (theirs first, then
    ``init``'s own), so a continued run can say how its start was made.
    A file of another architecture is refused with a one-line error.

    ``init`` may be :data:`SHIPPED_INIT` (``"sam-mini"``) for the weights shipped in the package.

    Illustration (not run as a doctest: it needs files or a model)::

        info = load_init(sam, "sam-mini")
        info["lineage"][-1]["recipe"]["steps"]
        # -> 1300
    """
    from ..assets import MODEL_CARD, REFERENCE_MODEL
    from ..errors import ModelTypeError
    from ..fsutil import sha256_file
    from ..models.io import load_model, read_metadata
    from ..models.regrid import GRID_FIELDS, non_grid_differences, regrid_state_dict

    path = init_path(init)
    src, src_spec = load_model(path)
    state, regrid = src.state_dict(), None
    want = {k: tuple(v.shape) for k, v in sam.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    dst_spec = getattr(sam, "spec", None)
    if want != have and dst_spec is not None and not non_grid_differences(src_spec.encoder, dst_spec.encoder):
        try:  # the same model on a finer token grid: move the weights there
            state = regrid_state_dict(state, src_spec.encoder, dst_spec.encoder)
        except ModelTypeError as e:
            raise ModelTypeError(f"--init {path}: {e}") from None
        regrid = {k: [getattr(src_spec.encoder, k), getattr(dst_spec.encoder, k)] for k in GRID_FIELDS}
        have = {k: tuple(v.shape) for k, v in state.items()}
    if want != have:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        raise ModelTypeError(f"--init {path}: its architecture differs from the one being trained "
                             f"(e.g. {diff[0]}: {have.get(diff[0])} vs {want.get(diff[0])}); pass weights of the same model")
    sam.load_state_dict(state)
    meta = read_metadata(path)
    shipped = path.resolve() == REFERENCE_MODEL.resolve()
    card_json = MODEL_CARD.with_suffix(".json")
    card = json.loads(card_json.read_text()) if shipped and "minutes" not in meta and card_json.is_file() else None
    parents = json.loads(meta.get("lineage", "[]"))
    return {"path": str(path), "sha256": sha256_file(path), "shipped": shipped,
            "lineage": parents + [stage_of(meta, card)], **({"regrid": regrid} if regrid else {})}


def _eval_score(res: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(res[k]["miou"]), 5) for k in ("point", "box", "point_multi")}


def train(
    recipe: Recipe,
    out: Path | str,
    *,
    resume: bool = True,
    spec: ModelSpec | None = None,
    quiet: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    threads: int = 2,
    device: str = "cpu",
    workers: int = 0,
    init: Path | str | None = None,
    keep_planned_steps: bool = False,
) -> dict[str, Any]:
    """Run (or resume) training; return ``{"steps", "best", "final", "elapsed_s", "out"}``.

    Arguments:
        recipe: hyperparameters (validated here).
        out: run folder (created).
        resume: continue from ``out/checkpoint.pt`` when it exists (its recipe is kept, except
            ``steps``, which may be raised to train longer).
        spec: architecture (default: the preset ``recipe.model_type``); tests pass a tiny one.
        quiet: no progress bar or log lines on the console.
        on_step: called after each step with ``(step, losses)``.
        threads: torch CPU threads (1 is faster than 2 on a 2-core machine that is busy otherwise).
        device: ``cpu``, ``cuda`` or ``auto``; weights are initialised on the CPU, so the start is
            the same everywhere (later steps differ by floating-point rounding).
        workers: processes generating the procedural images ahead of the GPU/CPU (0: inline).
        init: start from these weights (:func:`load_init`; ``"sam-mini"``: the shipped ones) instead of a random initialisation,
            to continue training a model with a new schedule (use a new ``data_seed`` to see new
            images). They are evaluated first (step 0), so ``best.safetensors`` is never worse than
            them. Ignored when resuming from a checkpoint, which holds the weights already.
        keep_planned_steps: on resume, train to the step count the checkpoint was planned with and
            ignore ``recipe.steps`` (a ``--resume`` without ``--steps``); a fresh run uses ``recipe.steps``.

    Illustration (not run as a doctest: it needs files or a model)::

        train(Recipe(steps=3, eval_every=3), "/tmp/run", spec=tiny, quiet=True)
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    recipe, spec, state = _plan(recipe, Path(out), resume=resume, spec=spec, init=init,
                                keep_planned_steps=keep_planned_steps)
    run = _start(recipe, spec, Path(out), state, device=device, threads=threads, init=init, quiet=quiet)
    recipe, sam, console = run.recipe, run.sam, run.console
    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    last: dict[str, float] = {}
    # on a GPU the corrective clicks are drawn there too (batch.corrective_clicks), seeded per step
    gen = torch.Generator(device=run.dev) if run.dev.type == "cuda" else None
    if run.init_info is not None:  # the starting weights are a candidate too: a worse run never replaces them
        run.evaluate(0)
    sam.train()
    bar = Progress(*columns, console=console, disable=quiet or not console.is_terminal)
    with tf32(run.dev.type == "cuda"), bar as progress:  # TF32 matmuls on a GPU, as compress
        task = progress.add_task("train", total=recipe.steps, completed=run.start, info="")
        for step, samples in enumerate(step_images(recipe, run.start, workers), run.start):
            last = run.step(step, samples, gen)
            done = step + 1
            info = f"loss {last['loss']:.4f} dice {last['dice']:.3f} iou {last['train_iou']:.3f}"
            progress.update(task, completed=done, info=info)
            run.log_step(done, last, info)
            if on_step is not None:
                on_step(done, last)
            if done % recipe.eval_every == 0 or done == recipe.steps:
                run.evaluate(done)
                sam.train()
            if done % recipe.checkpoint_every == 0 or done == recipe.steps:
                _save_checkpoint(run.out / CHECKPOINT, sam, run.opt, run.sched, done, recipe, run.best,
                                 time.time() - run.t0)
        if run.best is None:  # resumed at the end: nothing ran; evaluate what is there
            run.evaluate(run.start)
    elapsed = time.time() - run.t0
    _log(run.out / LOG, {"event": "end", "step": recipe.steps, "elapsed_s": round(elapsed, 1), "best": run.best})
    return {"steps": recipe.steps, "best": run.best, "final": last, "elapsed_s": elapsed, "out": str(out)}


def _plan(recipe: Recipe, out: Path, *, resume: bool, spec: ModelSpec | None, init: Path | str | None,
          keep_planned_steps: bool) -> tuple[Recipe, ModelSpec, dict | None]:
    """The run's recipe and architecture (a checkpoint's recipe when resuming, the init's grid when
    starting from weights) and the checkpoint's state (``None`` for a fresh run)."""
    recipe.validate()
    ckpt_path = out / CHECKPOINT
    state = _load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    base = spec or preset(recipe.model_type)
    if state is not None:  # the checkpoint's recipe, its architecture included
        saved = Recipe.from_json(state["recipe"])
        recipe = replace(saved, steps=saved.steps if keep_planned_steps else max(recipe.steps, state["step"]))
    elif init is not None:
        recipe = adopt_init_grid(recipe, init, base)
    spec = recipe.model_spec(base)
    if spec.image_size != recipe.image_size:
        raise UsageError(f"recipe image_size {recipe.image_size} != model input {spec.image_size}")
    return recipe, spec, state


class _Run:
    """One training run's model, optimiser, console and best evaluation (built by :func:`_start`)."""

    def __init__(self, recipe: Recipe, spec: ModelSpec, out: Path, dev: torch.device, sam: torch.nn.Module,
                 opt: torch.optim.Optimizer, sched: Any, console: Any, where: str, init_info: dict | None):
        self.recipe, self.spec, self.out, self.dev, self.sam = recipe, spec, out, dev, sam
        self.opt, self.sched, self.console, self.where, self.init_info = opt, sched, console, where, init_info
        self.start, self.best, self.t0 = 0, None, time.time()
        self.t_run = time.time()  # this process's start: the ETA uses only steps run here
        self.meta: dict[str, str] = {}

    def evaluate(self, step: int) -> None:
        """Held-out evaluation; a new best (by ``recipe.select``) is saved as ``best.safetensors``."""
        recipe = self.recipe
        res = evaluate_sam(self.sam, n_images=recipe.eval_images, seed=recipe.eval_seed, size=recipe.image_size,
                           point_multi=True)
        score = _eval_score(res)
        _log(self.out / LOG, {"event": "eval", "step": step, **score, "n_images": res["n_images"],
                              "n_masks": res["n_annotations"]})
        self.console.print(f"step {step}: held-out point mIoU {score['point']:.4f}, box {score['box']:.4f}, "
                           f"point(multi) {score['point_multi']:.4f} [{res['n_images']} images, "
                           f"{res['n_annotations']} masks]")
        if self.best is None or recipe.selection_score(score) > recipe.selection_score(self.best):
            self.best = {**score, "step": step, "n_images": res["n_images"], "n_masks": res["n_annotations"]}
            save_model(self.sam, self.spec, self.out / BEST, **self.meta, best_step=str(step),
                       eval_json=json.dumps(self.best), minutes=str(round((time.time() - self.t0) / 60, 1)))

    def step(self, step: int, samples: list, gen: torch.Generator | None) -> dict[str, float]:
        """One optimiser step on ``samples`` (prompts drawn from the step's seed); its losses."""
        recipe, sam = self.recipe, self.sam
        rng = np.random.default_rng(np.random.SeedSequence([recipe.seed, step]))
        if gen is not None:
            gen.manual_seed(int(np.random.SeedSequence([recipe.seed, step, 1]).generate_state(1)[0]))
        res = batch_loss(sam, recipe, [s.image for s in samples],
                         [[a.mask for a in s.annotations] for s in samples], rng, gen)
        self.opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        gnorm = torch.nn.utils.clip_grad_norm_(sam.parameters(), recipe.grad_clip)
        self.opt.step()
        self.sched.step()
        last = {k: round(float(v.detach()), 5) for k, v in res.items()}
        last["grad_norm"] = round(float(gnorm), 4)
        return last

    def log_step(self, done: int, last: dict[str, float], info: str) -> None:
        """Every ``log_every`` steps (and the last): a log line, and a console line off a terminal."""
        recipe = self.recipe
        if done % recipe.log_every == 0 or done == recipe.steps:
            el = time.time() - self.t0
            _log(self.out / LOG, {"event": "step", "step": done, "lr": self.sched.get_last_lr()[0],
                                  "elapsed_s": round(el, 1), **last})
            if not self.console.is_terminal:
                eta = (time.time() - self.t_run) / max(1, done - self.start) * (recipe.steps - done)
                self.console.print(f"step {done}/{recipe.steps} {info} lr {self.sched.get_last_lr()[0]:.2e} "
                                   f"elapsed {el / 60:.1f} min eta {eta / 60:.1f} min")


def _start(recipe: Recipe, spec: ModelSpec, out: Path, state: dict | None, *, device: str, threads: int,
           init: Path | str | None, quiet: bool) -> _Run:
    """Build the model on the device (from ``init`` or the checkpoint's state), the optimiser, the
    console, and log the start or resume."""
    from rich.console import Console

    dev = rank_device(resolve_device(device))  # a bad or missing device: refused before anything is written
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    sam = build_sam(spec).to(dev)
    start, best, elapsed = 0, None, 0.0
    init_info = None
    if state is None and init is not None:
        init_info = load_init(sam, init)
        recipe = replace(recipe, init_sha256=init_info["sha256"])
    opt, sched = make_optimizer(sam, recipe)
    if state is not None:
        sam.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(_np_state_from_tensors(state["numpy_rng"]))
        start, best, elapsed = int(state["step"]), state["best"], float(state["elapsed_s"])
    console = Console(stderr=True, quiet=quiet)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {threads} thread(s)"
    log_path = out / LOG
    if state is None:
        _log(log_path, {"event": "start", "recipe": recipe.to_dict(), "spec": spec.to_dict(), "device": where,
                        **({"init": init_info} if init_info else {})})
    else:
        console.print(f"resuming from step {start}" + (f" (--init {init} ignored: the checkpoint holds the weights; "
                                                       "--no-resume starts over)" if init is not None else ""))
        _log(log_path, {"event": "resume", "step": start, "steps": recipe.steps, "device": where})
    lineage = (init_info or start_event(read_log(out)).get("init") or {}).get("lineage", [])  # resumed: the parent's
    run = _Run(recipe, spec, out, dev, sam, opt, sched, console, where, init_info)
    run.start, run.best = start, best
    run.meta = {"steps": str(recipe.steps), "seed": str(recipe.seed), "recipe": recipe.to_json(), "device": where,
                "lineage": json.dumps(lineage)}
    run.t0 = time.time() - elapsed
    run.t_run = time.time()
    return run
