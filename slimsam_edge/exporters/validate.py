"""Validate an exported graph against the PyTorch model on several cases.

Every mismatch is collected; one :class:`~slimsam_edge.errors.ValidationError` lists them all with
their max differences (optimum's pattern). Decoder cases cover 1, 3 and 5 points, a box, box +
points, with and without ``mask_input``, and non-square original sizes, and for the batched low-res
decoder 2 and 3 prompts per call (points, boxes, mask_input on some prompts only); mask outputs must also
agree by IoU (threshold 0) with the reference.

Illustration (not run as a doctest: it needs files or a model)::

    report = validate_onnx(sam, "mask_decoder_lowres", "bundle/mask_decoder_lowres.onnx")
    report.ok
    # -> True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ValidationError
from ..eval.metrics import mask_iou
from ..models.graph_spec import ONNX_SPECS, OnnxSpec, has_prompt_axis
from ..models.graphs import make_wrapper


@dataclass
class CaseResult:
    case: str
    max_abs_diff: dict[str, float]
    mask_iou: dict[str, float]
    failures: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    graph: str
    backend: str
    cases: list[CaseResult]

    @property
    def ok(self) -> bool:
        return not any(c.failures for c in self.cases)

    @property
    def failures(self) -> list[str]:
        return [f for c in self.cases for f in c.failures]

    def summary(self) -> dict[str, Any]:
        worst: dict[str, float] = {}
        iou: dict[str, float] = {}
        for c in self.cases:
            for k, v in c.max_abs_diff.items():
                worst[k] = max(worst.get(k, 0.0), v)
            for k, v in c.mask_iou.items():
                iou[k] = min(iou.get(k, 1.0), v)
        return {
            "graph": self.graph, "backend": self.backend, "cases": len(self.cases), "ok": self.ok,
            "max_abs_diff": worst, "min_mask_iou": iou,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "cases": [asdict(c) for c in self.cases]}


def decoder_cases(module: torch.nn.Module, official: bool, batched: bool = False) -> list[tuple[str, tuple]]:
    """Named decoder input cases (torch tensors); ``batched`` (a graph with a prompt axis) adds
    cases of 3 and 2 prompts per call, none of them the export's shape (1 prompt, 3 points + pad).

    Example:
        >>> from slimsam_edge.models.build import build_sam
        >>> from slimsam_edge.models.graphs import LowResDecoder
        >>> from slimsam_edge.models.spec import PRESETS
        >>> cases = decoder_cases(LowResDecoder(build_sam(PRESETS["sam_mini"])), False, batched=True)
        >>> [(name, tuple(x[1].shape)) for name, x in cases][-2:]
        [('3 prompts: box + 1 point, mask_input on prompts 1 and 3', (3, 3, 2)), ('2 prompts: 4 points', (2, 5, 2))]
    """
    s = module.img_size
    sizes = [(s * 3 // 4, s), (s, s // 2 + 7), (s, s)]
    specs = [
        ("1 point", dict(points=1)),
        ("3 points", dict(points=3)),
        ("5 points", dict(points=5)),
        ("box", dict(points=0, box=True)),
        ("box + 2 points", dict(points=2, box=True)),
        ("1 point + mask_input", dict(points=1, with_mask=True)),
        ("box + 3 points + mask_input", dict(points=3, box=True, with_mask=True)),
    ]
    cases = []
    for i, (name, kw) in enumerate(specs):
        extra = {"orig_hw": sizes[i % len(sizes)]} if official else {}
        label = name + (f" @ {extra['orig_hw'][0]}x{extra['orig_hw'][1]}" if official else "")
        cases.append((label, module.example_inputs(seed=100 + i, **kw, **extra)))
    if batched:
        for i, (name, kw) in enumerate(_BATCHED, len(specs)):
            cases.append((name, module.example_inputs(seed=100 + i, **kw)))
    return cases


#: prompt-axis cases of a batched decoder (B prompts against one embedding)
_BATCHED = [
    ("3 prompts: 2 points", dict(points=2, batch=3)),
    ("3 prompts: box", dict(points=0, box=True, batch=3)),
    ("3 prompts: box + 1 point, mask_input on prompts 1 and 3", dict(points=1, box=True, with_mask=True, batch=3)),
    ("2 prompts: 4 points", dict(points=4, batch=2)),
]


def _cases(module: torch.nn.Module, spec: OnnxSpec) -> list[tuple[str, tuple]]:
    if "point_coords" not in spec.inputs:  # an encoder: its wrapper names its cases
        return module.example_cases()
    return decoder_cases(module, official="orig_im_size" in spec.inputs, batched=has_prompt_axis(spec))


def compare_outputs(
    spec: OnnxSpec, ref: dict[str, np.ndarray], got: dict[str, np.ndarray], case: str,
    *, atol_scale: float = 1.0, min_mask_iou: float | None = None,
) -> CaseResult:
    """Compare two output dicts under ``spec``'s tolerances; returns the case's result."""
    res = CaseResult(case=case, max_abs_diff={}, mask_iou={})
    floor = spec.min_mask_iou if min_mask_iou is None else min_mask_iou
    for name in spec.outputs:
        r, g = ref[name], got.get(name)
        if g is None:
            res.failures.append(f"{case}: output {name} missing")
            continue
        if r.shape != g.shape:
            res.failures.append(f"{case}: {name} shape {g.shape} != reference {r.shape}")
            continue
        diff = float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64)))) if r.size else 0.0
        res.max_abs_diff[name] = diff
        atol = spec.atol.get(name, 1e-3) * atol_scale
        tol_ok = np.allclose(g, r, atol=atol, rtol=spec.rtol * atol_scale)
        if name in spec.mask_outputs:
            iou = mask_iou(r, g)
            res.mask_iou[name] = iou
            if iou < floor:
                res.failures.append(f"{case}: {name} mask IoU {iou:.4f} < {floor}")
        elif not tol_ok:
            res.failures.append(f"{case}: {name} max |diff| {diff:.3g} > atol {atol:.3g}")
    return res


def _run_cases(module: torch.nn.Module, spec: OnnxSpec,
               run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> list[CaseResult]:
    results = []
    for name, inputs in _cases(module, spec):
        with torch.no_grad():
            ref_out = module(*inputs)
        if isinstance(ref_out, torch.Tensor):
            ref_out = (ref_out,)
        ref = {n: t.detach().cpu().numpy() for n, t in zip(spec.outputs, ref_out)}
        feed = {n: t.detach().cpu().numpy().astype(np.float32) for n, t in zip(spec.inputs, inputs)}
        results.append(compare_outputs(spec, ref, run(feed), name))
    return results


def validate_onnx(
    sam: torch.nn.Module,
    graph: str | OnnxSpec,
    onnx_path: Path | str,
    *,
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    raise_on_failure: bool = True,
    backend: str = "onnxruntime",
) -> ValidationReport:
    """Run every case through the exported graph and the PyTorch wrapper, compare outputs.

    Arguments:
        sam: the reference model.
        graph: graph name or :class:`OnnxSpec`.
        onnx_path: the exported file (run with ONNX Runtime unless ``run`` is given).
        run: alternative runner callable (feed → outputs), e.g. an OpenVINO runner's ``infer``.
    """
    spec = ONNX_SPECS[graph] if isinstance(graph, str) else graph
    module = make_wrapper(sam, spec)
    if run is None:
        from ..runtimes import open_runner

        with open_runner(Path(onnx_path), backend="onnxruntime") as runner:  # closed when done
            results = _run_cases(module, spec, runner.infer)
    else:
        results = _run_cases(module, spec, run)
    report = ValidationReport(graph=spec.name, backend=backend, cases=results)
    if raise_on_failure and not report.ok:
        fails = report.failures
        raise ValidationError(
            f"{spec.name} ({backend}) does not match PyTorch in {len(fails)} check(s): "
            + "; ".join(fails[:6]) + (f"; +{len(fails) - 6} more" if len(fails) > 6 else ""),
            failures=fails,
        )
    return report
