"""``slimsam-edge bench A B C --peer NAME``: several bundles and peers, side by side, in one run.

The report users can trust puts, in one row per (model, backend, precision, scenario):

- latency per stage from interleaved repeats (:mod:`~slimsam_edge.bench.schedule`: every row runs
  once per round, each round in a fresh process, rounds rotate), pooled into p50 / p90 / p99, with
  the spread of the p50 between repeats (what ``bench diff`` must see exceeded);
- cold start and peak memory (each repeat is a new process);
- the accuracy of that very runtime and precision: point and box mIoU on ``data`` (default: the
  procedural held-out set, for bundles of 256 px or less: sam-mini and what is compressed from it)
  and the mask agreement with the same backend's fp32; a row without accuracy says why;
- energy per image / prompt / frame where the machine has a meter (else n/a and why);
- the encoder's achieved GFLOP/s from its counted MACs (attention included) as % of this
  machine's peak for that precision (:mod:`~slimsam_edge.bench.peak`);
- the ratio of each row's headline latency to the first row's.

Peers (``--peer``) are exported on the fly with random weights: latency only, labelled so; in
fp32 and in the precisions asked for (``--precision int8``: its int8 artifacts, calibrated and
gated as ``export`` makes ours). A peer bundle given as a folder is labelled the same way.
``base.decoder_precision`` runs every row's decoder in that precision (rows say so).

Illustration (not run as a doctest: it needs files or a model)::

    report = bench_suite(["bundle/"], peers=["mobilesam"], repeats=3, runs=5)
    [(r["label"], r["stages"]["encoder"]["p50_ms"], r["ratio"]) for r in report["rows"]]
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import UsageError

REPORT_SCHEMA = "slimsam-edge-bench/2"
#: bundles at or below this input size get the procedural held-out set as default accuracy data
PROCEDURAL_MAX_SIZE = 256
#: which peak a precision's encoder is compared with
PEAK_KIND = {"fp32": "fp32", "fp16": "fp32", "bf16": "bf16", "int8": "int8", "int8-bf16": "int8"}
#: ``progress(done, total, label)``
SuiteProgress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Subject:
    """One model in the comparison: a bundle folder, or a peer exported into one."""

    label: str
    bundle: str
    peer: str | None = None
    #: the (backend, precision) pairs to measure; empty: the suite's choice
    pairs: tuple[tuple[str, str], ...] = ()
    #: set when accuracy means nothing for this model (random weights): the accuracy column's reason
    latency_only: str = ""


@dataclass(frozen=True)
class Row:
    """One measured row: a subject on one (backend, precision) for one scenario."""

    subject: Subject
    backend: str
    precision: str
    scenario: str
    #: the decoder's precision where it differs from ``precision`` (``--decoder-precision``)
    decoder_precision: str | None = None

    @property
    def label(self) -> str:
        dec = f" (decoder {self.decoder_precision})" if self.decoder_precision else ""
        return f"{self.subject.label} {self.backend}/{self.precision}{dec}"


def _subjects(bundles: Sequence[str | Subject], peers: Sequence[str], workdir: Path,
              progress: SuiteProgress, backends: Sequence[str] | None = None,
              precisions: Sequence[str] | None = None) -> list[Subject]:
    from ..bundle import load_bundle

    found: list[tuple[str, str, str | None]] = []
    given = [b for b in bundles if isinstance(b, Subject)]
    for b in (b for b in bundles if not isinstance(b, Subject)):
        if not Path(b, "manifest.json").is_file():
            raise UsageError(f"{b} is not a bundle folder (no manifest.json); export one with "
                             "`slimsam-edge export` or name a peer with --peer")
        peer = load_bundle(b, verify=False).manifest.model.get("peer")  # a peer bundle: latency only
        found.append((Path(b).resolve().name or str(b), str(b), peer if isinstance(peer, str) else None))
    if peers:
        from ..exporters.peer_export import PEER_BACKENDS, export_peer, peer_artifact_precisions
        from ..models.peers import get_peer

        for name in peers:
            get_peer(name)  # an unknown name is refused before any export
        # the backends asked for that a peer bundle holds (else both), the precisions' artifacts
        peer_backends = tuple(b for b in backends or () if b in PEER_BACKENDS) or PEER_BACKENDS
        wanted = peer_artifact_precisions(precisions or ())
        for i, name in enumerate(peers):
            progress(i, len(peers), f"exporting peer {name} (random weights, {', '.join(wanted)})")
            path = export_peer(name, workdir / name, backends=peer_backends, precisions=wanted, validate=False,
                               reference=False)
            found.append((f"{name} (random weights)", str(path), name))
    labels = [label for label, _, _ in found] + [g.label for g in given]
    # two bundles with the same folder name are told apart by their paths
    return given + [Subject(label if labels.count(label) == 1 else bundle, bundle, peer)
                    for label, bundle, peer in found]


def _rows(subjects: Sequence[Subject], backends: Sequence[str] | None, precisions: Sequence[str] | None,
          scenarios: Sequence[str], info: dict, all_pairs: bool = False,
          decoder_precision: str | None = None) -> tuple[list[Row], list[dict]]:
    from ..bundle import load_bundle
    from ..devices import why_not
    from ..predictor import auto_pick
    from .run import runnable_pairs, runnable_decoder

    rows, skipped = [], []
    for s in subjects:
        b = load_bundle(s.bundle)
        if s.pairs:
            pairs = []
            for be, pr in s.pairs:
                try:
                    pairs += runnable_pairs(b, [be], [pr])[0]
                except UsageError as err:
                    skipped.append({"label": s.label, "backend": be, "precision": pr, "reason": str(err)})
        elif backends or precisions or all_pairs:
            have = [x for x in (backends or b.backends()) if x in b.backends()]
            skipped += [{"label": s.label, "backend": x, "reason": f"{s.label} has no {x} artifacts"}
                        for x in (backends or []) if x not in b.backends()]
            if not have:
                continue
            try:
                pairs, miss = runnable_pairs(b, have, list(precisions) if precisions else None)
            except UsageError as err:
                skipped.append({"label": s.label, "reason": str(err)})
                continue
            skipped += [{"label": s.label, **m} for m in miss]
        else:
            pairs = [auto_pick(b, None, None, info)]
        for be, pr in pairs:
            if why_not(pr, info):
                skipped.append({"label": s.label, "backend": be, "precision": pr, "reason": why_not(pr, info)})
                continue
            dec = decoder_precision if decoder_precision not in (None, pr) else None
            why = runnable_decoder(b, be, dec) if dec else None
            if why:
                skipped.append({"label": s.label, "backend": be, "precision": pr, "decoder_precision": dec,
                                "reason": why})
                continue
            rows += [Row(s, be, pr, sc, dec) for sc in scenarios]
    if not rows:
        raise UsageError("nothing to benchmark: " + ("; ".join(x["reason"] for x in skipped) or "no pair"))
    return rows, skipped


def _pool(results: list[dict], stages: Sequence[str]) -> dict[str, Any]:
    from .stats import latency_stats, spread_ms

    out = {}
    for stage in stages:
        raw = [v for r in results for v in r.get("raw_s", {}).get(stage, [])]
        if not raw:
            continue
        p50s = [r[stage]["p50_ms"] for r in results if r.get(stage, {}).get("n")]
        out[stage] = {**latency_stats(raw), "spread_ms": spread_ms(p50s), "repeat_p50_ms": p50s}
    return out


def _energy(results: list[dict]) -> dict[str, Any]:
    parts: dict[str, Any] = {}
    for part in results[0].get("energy", {}):
        readings = [r["energy"][part] for r in results]
        missing = next((x for x in readings if x.get("joules") is None), None)
        if missing is not None:
            parts[part] = {"joules_per_item": None, "source": missing.get("source"),
                           "reason": missing.get("reason", "no reading")}
            continue
        joules, count = sum(x["joules"] for x in readings), sum(x["count"] for x in readings)
        parts[part] = {"joules_per_item": round(joules / count, 6) if count else None,
                       "source": readings[0]["source"], "watts": round(joules / max(sum(x["seconds"] for x in readings), 1e-9), 3)}
    return parts


def _macs(manifest: Any) -> tuple[float | None, str]:
    """The encoder's MACs from a bundle's manifest (a peer's counted ones, else from its spec)."""
    from ..models.spec import ModelSpec
    from ..models.stats import encoder_macs

    model = manifest.model
    counted = model.get("encoder_macs")
    if isinstance(counted, dict):  # a peer's exporter: {"linear_conv", "attention", "total"}
        counted = counted.get("total")
    if isinstance(counted, (int, float)) and not isinstance(counted, bool) and counted > 0:
        return float(counted), "counted by the peer's exporter"
    try:
        return float(encoder_macs(ModelSpec.from_dict(model["spec"]).encoder)["total"]), "from the model spec"
    except Exception as err:  # noqa: BLE001 - a spec we cannot count: the column says why
        return None, f"the manifest's model spec cannot be counted ({type(err).__name__})"


def _efficiency(row: Row, stages: dict, peak: dict | None, macs: tuple[float | None, str]) -> dict[str, Any]:
    from .peak import achieved_gflops, pct_of_peak

    enc = stages.get("encoder")
    if row.scenario != "click" or not enc:
        return {"reason": "% of peak is reported for the click scenario's encoder"}
    if macs[0] is None:
        return {"reason": macs[1]}
    kind = PEAK_KIND.get(row.precision, "fp32")
    got = achieved_gflops(macs[0], enc["p50_ms"] / 1e3)
    peak_rate = (peak or {}).get("gemm_gflops", {}).get(kind)
    out = {"encoder_gmacs": round(macs[0] / 1e9, 3), "achieved_gflops": got, "peak_kind": kind,
           "peak_gflops": peak_rate, "pct_of_peak": pct_of_peak(got, peak_rate)}
    if peak_rate is None:
        out["reason"] = ((peak or {}).get("why_none", {}).get(kind) or "no peak measured (--no-peak)")
    return out


def _accuracy(row: Row, data: str | None, limit: int | None, cache: dict, image_size: int) -> dict[str, Any]:
    if row.subject.latency_only:
        return {"reason": row.subject.latency_only}
    if row.subject.peer:
        from ..models.peers import get_peer

        return {"reason": get_peer(row.subject.peer).label}
    if data is None and image_size > PROCEDURAL_MAX_SIZE:
        return {"reason": f"no --data given; the procedural held-out set is the default only for bundles of "
                          f"{PROCEDURAL_MAX_SIZE} px or less (this one is {image_size} px); accuracy needs labelled data"}
    key = (row.subject.bundle, row.backend, row.precision, row.decoder_precision)
    if key not in cache:
        cache[key] = _measure_accuracy(row, data, limit)
    return cache[key]


def _measure_accuracy(row: Row, data: str | None, limit: int | None) -> dict[str, Any]:
    from ..eval.agreement import compare_predictors
    from ..eval.evaluate import default_eval_data
    from ..eval.run import run_eval
    from ..predictor import EdgePredictor

    rep = run_eval(row.subject.bundle, data=data, backend=row.backend, precision=row.precision, limit=limit,
                   decoder_precision=row.decoder_precision)
    out = {"point_miou": round(rep["point"]["miou"], 4) if rep.get("point") else None,
           "box_miou": round(rep["box"]["miou"], 4) if rep.get("box") else None,
           "images": rep.get("n_images"), "data": "procedural held-out" if data is None else str(data)}
    if (row.precision, row.decoder_precision or row.precision) != ("fp32", "fp32"):
        try:
            ref = EdgePredictor.from_bundle(row.subject.bundle, backend=row.backend, precision="fp32")
            cand = EdgePredictor.from_bundle(row.subject.bundle, backend=row.backend, precision=row.precision,
                                             decoder_precision=row.decoder_precision)
            agree = compare_predictors(ref, cand, default_eval_data(min(limit or 16, 16)))
            out["agreement_fp32"] = round(agree["agreement"], 4)
        except Exception as err:  # noqa: BLE001 - no fp32 to compare with: the column says why
            out["agreement_reason"] = f"no fp32 comparison ({type(err).__name__}: {err})"
    else:
        out["agreement_fp32"] = 1.0
    return out


def bench_suite(
    bundles: Sequence[str | Subject] = (),
    *,
    peers: Sequence[str] = (),
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    all_pairs: bool = False,
    scenarios: Sequence[str] = ("click",),
    repeats: int = 3,
    base: Any = None,
    data: str | None = None,
    accuracy_limit: int | None = None,
    accuracy: bool = True,
    peak_cache: str | None = None,
    peak: bool = True,
    profile: bool = False,
    workdir: str | None = None,
    progress: SuiteProgress | None = None,
) -> dict[str, Any]:
    """Measure every row ``repeats`` times, interleaved; return the report (module docstring).

    Without ``backends``, ``precisions`` and ``all_pairs`` each bundle runs the pair picked for
    this machine (what ``segment`` runs); ``all_pairs``: every pair each bundle holds.

    ``base`` is a :class:`~slimsam_edge.bench.harness.BenchConfig` whose protocol fields (threads,
    image, runs, prompts, warmup, duration_s, energy, points_per_side) every row uses; its
    ``runs`` / ``prompts`` / ``duration_s`` are per repeat; its ``decoder_precision`` applies to
    every row (a pair whose backend lacks it is skipped with the reason). ``profile``: each row's graphs are
    also profiled once, after its first round's timed part. A :class:`Subject` in ``bundles``
    keeps its own label and pairs.

    Raises:
        UsageError: a folder that is not a bundle, an unknown peer or scenario, nothing runnable.
    """
    from ..bundle import load_bundle
    from ..devices import detect, detected, why_not
    from ..errors import UnsupportedOnThisMachineError
    from ..runtimes import runtime_distributions
    from .harness import BenchConfig, run_config
    from .peak import cached_peak, fingerprint
    from .scenarios import get_scenario
    from .schedule import interleave

    tell = progress or (lambda done, total, label: None)
    if not bundles and not peers:
        raise UsageError("give at least one bundle folder or --peer NAME")
    stage_lists = {sc: get_scenario(sc).stages for sc in scenarios}
    base = base or BenchConfig(bundle="", backend="")
    info = detected()
    for pr in [*(precisions or []), *([base.decoder_precision] if base.decoder_precision else [])]:
        if why_not(pr, info):  # asked for by name: refused on a CPU without it, never skipped
            raise UnsupportedOnThisMachineError(why_not(pr, info))
    if data is not None and accuracy:  # checked before any measuring: a folder without labels
        from ..data.auto import open_labelled
        from ..errors import DataError

        try:
            if len(open_labelled(Path(data))) == 0:
                raise DataError(f"{data} holds no labelled image")
        except DataError as err:
            raise UsageError(f"--data: {err}; accuracy needs labelled images (an SA-1B folder with its "
                             "JSON files, or a COCO instances file), or pass --no-accuracy") from None
    machine = detect(runtime_distributions())
    tmp = tempfile.TemporaryDirectory(prefix="slimsam-bench-") if peers and not workdir else None
    try:
        work = Path(workdir or (tmp.name if tmp else "."))
        subjects = _subjects(bundles, peers, work, tell, backends, precisions)
        rows, skipped = _rows(subjects, backends, precisions, scenarios, info, all_pairs, base.decoder_precision)
        peak_info = cached_peak(peak_cache, machine, threads=base.threads) if peak else None
        slots = interleave(rows, repeats)
        results: dict[int, list[dict]] = {}
        for n, slot in enumerate(slots):
            row = slot.config
            tell(n, len(slots), f"{row.label} {row.scenario} (round {slot.repeat + 1}/{repeats})")
            cfg = replace(base, bundle=row.subject.bundle, backend=row.backend, precision=row.precision,
                          decoder_precision=row.decoder_precision, scenario=row.scenario, raw=True)
            if profile and slot.repeat == 0:  # once per row, in its first round (untimed part)
                cfg = replace(cfg, profile=True)
            results.setdefault(slot.index, []).append(run_config(cfg))
        tell(len(slots), len(slots), "accuracy")
        acc_cache: dict = {}
        manifests = {s.bundle: load_bundle(s.bundle, verify=False).manifest for s in {r.subject for r in rows}}
        out_rows = []
        for i, row in enumerate(rows):
            rs = results[i]
            stages = _pool(rs, stage_lists[row.scenario])
            out_rows.append({
                "label": row.label, "model": row.subject.label, "bundle": row.subject.bundle,
                "peer": row.subject.peer, "backend": row.backend, "precision": row.precision,
                "decoder_precision": row.decoder_precision or row.precision, "scenario": row.scenario, "repeats": len(rs), "stages": stages,
                "headline": get_scenario(row.scenario).headline,
                "cold_start_s": round(sorted(r["cold_start_s"] for r in rs)[len(rs) // 2], 4),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                "counts": {k: sum(r["counts"].get(k, 0) for r in rs) for k in rs[0]["counts"]},
                "extra": rs[-1].get("extra", {}),
                "extra_repeats": [r.get("extra", {}) for r in rs],
                "energy": _energy(rs),
                "efficiency": _efficiency(row, stages, peak_info, _macs(manifests[row.subject.bundle])),
                "accuracy": (_accuracy(row, data, accuracy_limit, acc_cache,
                                       int(manifests[row.subject.bundle].image_size))
                             if accuracy else {"reason": "accuracy was turned off (--no-accuracy)"}),
                "image_hw": rs[0]["image_hw"], "notes": rs[0].get("notes", []),
                **({"profile": next((r["profile"] for r in rs if "profile" in r), None)} if profile else {}),
            })
        _ratios(out_rows)
        return {"schema": REPORT_SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {**machine, "fingerprint": fingerprint(machine, base.threads)},
                "protocol": {"repeats": repeats, "order": [[s.index, s.repeat] for s in slots],
                             "runs_per_repeat": base.runs, "prompts_per_repeat": base.prompts,
                             "warmup": base.warmup, "duration_s_per_repeat": base.duration_s,
                             "threads": base.threads, "image_hw": list(base.image_hw), "image": base.image,
                             "resize": base.resize, "points_per_prompt": base.points,
                             "energy": base.energy, "scenarios": list(scenarios),
                             "decoder_precision": base.decoder_precision},
                "peak": peak_info, "rows": out_rows, "skipped": skipped}
    finally:
        if tmp is not None:
            tmp.cleanup()


def _ratios(rows: list[dict]) -> None:
    """Each row's headline p50 over the first row's of the same scenario."""
    first: dict[str, float] = {}
    for r in rows:
        stage = r["stages"].get(r["headline"] or "", {})
        p50 = stage.get("p50_ms")
        if p50 and r["scenario"] not in first:
            first[r["scenario"]] = p50
        base = first.get(r["scenario"])
        r["ratio"] = round(p50 / base, 3) if p50 and base else None


def save_history(path: str | Path, report: dict) -> Path:
    """Append ``report`` as one JSON line to the history file ``path`` (atomically: the file is
    rewritten under a temporary name and renamed, so a crash never leaves half a line)."""
    from ..fsutil import write_text_atomic

    p = Path(path)
    if p.exists() and not p.is_file():
        raise UsageError(f"--save {p} is not a file; name a .jsonl file")
    old = p.read_text(encoding="utf-8") if p.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    return write_text_atomic(p, old + json.dumps(report, allow_nan=False, default=str) + "\n")


def check_outputs(*, out: Path | str | None = None, csv: Path | str | None = None, md: Path | str | None = None,
                  plot: Path | str | None = None, save: Path | str | None = None) -> None:
    """Refuse, in one line, an output that cannot be written (a folder where a file is wanted, a
    file where the plot folder is, a path under a regular file): ``bench`` calls it before it
    measures, :func:`write_outputs` before it writes."""
    from ..safeio import require_output_path

    for flag, path in {"--out": out, "--csv": csv, "--md": md, "--save": save}.items():
        if path is not None:
            require_output_path(path, flag)
    if plot is not None:
        require_output_path(plot, "--plot", folder=True)


def write_outputs(report: dict, *, out: Path | str | None = None, csv: Path | str | None = None,
                  md: Path | str | None = None, plot: Path | str | None = None) -> list[Path]:
    """Write the report's files (each atomically; :func:`check_outputs` refuses a bad path before
    anything is written). Returns the paths written."""
    from ..fsutil import write_text_atomic
    from .render import to_csv, to_markdown

    check_outputs(out=out, csv=csv, md=md, plot=plot)
    files = {"--out": out, "--csv": csv, "--md": md}
    written: list[Path] = []
    text = {"--out": lambda: json.dumps(report, indent=2, allow_nan=False, default=str) + "\n",
            "--csv": lambda: to_csv(report), "--md": lambda: to_markdown(report)}
    for flag, path in files.items():
        if path is not None:
            written.append(write_text_atomic(Path(path), text[flag]()))
    if plot is not None:
        from .plot import write_plots

        written += write_plots(report, plot)
    return written
