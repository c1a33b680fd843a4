"""The OpenVINO in-memory rewrites: a convolution's output contracted over its channels by a MatMul
is computed channel-last, and the upscaling chain before it in horizontal bands, with the same
values; what is not that pattern stays as it is; the runner applies both on CPU by default
(``extra["channel_last"]``, ``extra["banded"]``), leaves a caller's in-memory model alone, and
refuses a malformed switch in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slimsam_edge.errors import UsageError
from slimsam_edge.runtimes import RunnerOptions, open_runner

ov = pytest.importorskip("openvino")
ops = pytest.importorskip("openvino.opset13")

from slimsam_edge.runtimes.openvino import rewrite  # noqa: E402
from slimsam_edge.runtimes.openvino.rewrite import banded_upscaling, channel_last_contractions  # noqa: E402


def _erf_gelu(x):
    """GELU as an ONNX export spells it: x * 0.5 * (1 + erf(x / sqrt(2)))."""
    inner = ops.erf(ops.divide(x, ops.constant(np.float32(np.sqrt(2.0)))))
    return ops.multiply(ops.multiply(x, ops.add(inner, ops.constant(np.float32(1.0)))), ops.constant(np.float32(0.5)))


def _decoder_tail(flat_shape=None) -> "ov.Model":
    """b prompts' K=3 vectors contracted with a 2x transposed-convolution upscaling of a 1x6x5x4
    feature map (the shape of SAM's mask decoder's last product), masks b x 3 x 10 x 8."""
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 6, 5, 4], np.float32, name="features")
    hyper = ops.parameter([-1, 3, (flat_shape or [1, 4])[1]], np.float32, name="hyper")
    up = ops.convolution_backprop_data(x, ops.constant(rng.standard_normal((6, 4, 2, 2)).astype(np.float32)),
                                       [2, 2], pads_begin=[0, 0], pads_end=[0, 0], dilations=[1, 1])
    up = _erf_gelu(ops.add(up, ops.constant(rng.standard_normal((1, 4, 1, 1)).astype(np.float32))))
    flat = ops.reshape(up, np.array(flat_shape or [1, 4, 80], np.int64), special_zero=False)
    masks = ops.matmul(hyper, flat, False, False)
    masks = ops.reshape(masks, np.array([0, 3, 10, 8] if flat_shape is None else [0, -1], np.int64), special_zero=True)
    masks.output(0).get_tensor().set_names({"masks"})
    return ov.Model([masks], [x, hyper], "tail")


def _sam_upscaling(kernel: int = 2, norm_axis: int = 1, extra_output: bool = False) -> "ov.Model":
    """SAM's mask-decoder tail as an ONNX export reads into OpenVINO: features 1x8x8x6 (dynamic
    batch) -> transposed conv (``kernel``, stride 2) + bias -> channel layer norm (ReduceMean over
    ``norm_axis``) -> GELU -> transposed conv + bias -> GELU -> ``hyper @ reshape`` -> masks
    b x 3 x 4H x 4W, the last reshape's shape taken from the features' ShapeOf as exported."""
    rng = np.random.default_rng(1)
    x = ops.parameter([-1, 8, 8, 6], np.float32, name="features")
    hyper = ops.parameter([-1, 3, 4], np.float32, name="hyper")

    def up(v, cin, cout, k):
        w = ops.constant(rng.standard_normal((cin, cout, k, k)).astype(np.float32))
        pad = (k - 2) // 2
        out = ops.convolution_backprop_data(v, w, [2, 2], pads_begin=[pad, pad], pads_end=[pad, pad], dilations=[1, 1])
        return ops.add(out, ops.reshape(ops.constant(rng.standard_normal(cout).astype(np.float32)),
                                        np.array([1, cout, 1, 1], np.int64), special_zero=False))

    y = up(x, 8, 5, kernel)
    centred = ops.subtract(y, ops.reduce_mean(y, np.array([norm_axis], np.int64), True))
    var = ops.reduce_mean(ops.power(centred, ops.constant(np.float32(2))), np.array([norm_axis], np.int64), True)
    y = ops.divide(centred, ops.sqrt(ops.add(var, ops.constant(np.float32(1e-6)))))
    y = ops.add(ops.multiply(ops.constant(rng.standard_normal((5, 1, 1)).astype(np.float32)), y),
                ops.constant(rng.standard_normal((5, 1, 1)).astype(np.float32)))
    y = _erf_gelu(up(_erf_gelu(y), 5, 4, 2))
    side = y.output(0).get_partial_shape()
    flat = ops.reshape(y, np.array([-1, 4, side[2].get_length() * side[3].get_length()], np.int64), special_zero=False)
    shape = ops.shape_of(y)  # [b, 4, 4H, 4W]
    target = ops.concat([ops.gather(shape, np.array([0], np.int64), np.array(0, np.int64)),
                         ops.constant(np.array([-1], np.int64)),
                         ops.gather(shape, np.array([2, 3], np.int64), np.array(0, np.int64))], 0)
    masks = ops.reshape(ops.matmul(hyper, flat, False, False), target, special_zero=False)
    masks.output(0).get_tensor().set_names({"masks"})
    results = [masks] + ([ops.relu(y)] if extra_output else [])
    return ov.Model(results, [x, hyper], "sam_tail")


def _run(model: "ov.Model", feed: dict[str, np.ndarray]) -> np.ndarray:
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled.create_infer_request().infer(feed)[compiled.output(0)]


@pytest.mark.parametrize("batch", [1, 3])
def test_the_contraction_is_rewritten_with_the_same_values(batch):
    rng = np.random.default_rng(batch)
    feed = {"features": rng.standard_normal((1, 6, 5, 4)).astype(np.float32),
            "hyper": rng.standard_normal((batch, 3, 4)).astype(np.float32)}
    plain, fast = _decoder_tail(), _decoder_tail()
    assert channel_last_contractions(fast) == 1
    kinds = [op.get_type_name() for op in fast.get_ordered_ops()]
    matmul = next(op for op in fast.get_ordered_ops() if op.get_type_name() == "MatMul")
    assert kinds.count("Transpose") == 2 and matmul.get_attributes()["transpose_b"]
    assert fast.output(0).get_names() == {"masks"}
    want = _run(plain, feed)
    assert want.shape == (batch, 3, 10, 8)
    np.testing.assert_allclose(_run(fast, feed), want, rtol=1e-5, atol=1e-5)
    assert channel_last_contractions(fast) == 0  # the rewritten graph has no such MatMul left


def test_other_matmuls_are_left_alone():
    assert channel_last_contractions(_decoder_tail(flat_shape=[1, 40, 8])) == 0  # not over the channels
    x = ops.parameter([2, 5, 4, 4], np.float32)
    a = ops.parameter([2, 3, 5], np.float32)
    flat = ops.reshape(x, np.array([2, 5, 16], np.int64), special_zero=False)  # no convolution made x
    assert channel_last_contractions(ov.Model([ops.matmul(a, flat, False, False)], [x, a])) == 0
    a_t = ops.parameter([2, 5, 3], np.float32)
    flat = ops.reshape(ops.convolution(x, np.ones((5, 5, 1, 1), np.float32), [1, 1], [0, 0], [0, 0], [1, 1]),
                       np.array([2, 5, 16], np.int64), special_zero=False)
    assert channel_last_contractions(ov.Model([ops.matmul(a_t, flat, True, False)], [x, a_t])) == 0  # transposed A


def _count(model: "ov.Model", kind: str) -> int:
    return [op.get_type_name() for op in model.get_ordered_ops()].count(kind)


@pytest.mark.parametrize("batch", [1, 2])
def test_the_upscaling_runs_in_bands_with_the_same_masks(monkeypatch, batch):
    """With a band budget below the chain's largest map (SAM's at 1024 px: 2 M values, 4 bands; here 2),
    the whole chain is split along the height, every band's product channel-last, the shape the
    masks' reshape reads kept, and the masks are the same."""
    monkeypatch.setattr(rewrite, "BAND_BYTES", 2 * 4 * 32 * 24)  # half the 4 x 32 x 24 floats: 2 bands
    rng = np.random.default_rng(batch)
    feed = {"features": rng.standard_normal((batch, 8, 8, 6)).astype(np.float32),
            "hyper": rng.standard_normal((batch, 3, 4)).astype(np.float32)}
    plain, fast = _sam_upscaling(), _sam_upscaling()
    assert banded_upscaling(fast) == 1
    assert _count(fast, "ConvolutionBackpropData") == 2 * 2 and _count(fast, "Slice") == 2
    assert channel_last_contractions(fast) == 2  # each band's product
    want = _run(plain, feed)
    assert want.shape == (batch, 3, 32, 24)
    np.testing.assert_allclose(_run(fast, feed), want, rtol=1e-5, atol=1e-5)
    assert banded_upscaling(fast) == 0  # the band products are no longer fed by a whole chain


def test_upscaling_that_is_not_per_row_or_fits_stays_whole(monkeypatch):
    monkeypatch.setattr(rewrite, "BAND_BYTES", 256)
    assert banded_upscaling(_sam_upscaling(kernel=4)) == 0  # 4x4 kernel, stride 2: rows overlap
    assert banded_upscaling(_sam_upscaling(norm_axis=2)) == 0  # a mean over the height
    assert banded_upscaling(_sam_upscaling(extra_output=True)) == 0  # the upscaled map is an output too
    monkeypatch.setattr(rewrite, "BAND_BYTES", 1 << 30)
    assert banded_upscaling(_sam_upscaling()) == 0  # small enough to stay whole


def test_the_runner_rewrites_on_cpu_by_default_and_keeps_the_callers_model():
    rng = np.random.default_rng(7)
    feed = {"features": rng.standard_normal((1, 6, 5, 4)).astype(np.float32),
            "hyper": rng.standard_normal((2, 3, 4)).astype(np.float32)}
    model = _decoder_tail()
    with open_runner(model, backend="openvino", options=RunnerOptions(threads=1)) as fast, \
            open_runner(model, backend="openvino", options=RunnerOptions(threads=1, extra={"channel_last": False})) as plain:
        assert any("1 channel contraction(s) computed channel-last" in n for n in fast.notes)
        assert not any("channel-last" in n for n in plain.notes)
        np.testing.assert_allclose(fast.infer(feed)["masks"], plain.infer(feed)["masks"], rtol=1e-5, atol=1e-5)
    assert [op.get_type_name() for op in model.get_ordered_ops()].count("Transpose") == 0  # the caller's, untouched
    with pytest.raises(UsageError, match="channel_last must be true or false, got 'yes'"):
        open_runner(model, backend="openvino", options=RunnerOptions(extra={"channel_last": "yes"}))
    with pytest.raises(UsageError, match="banded must be true or false, got 1"):
        open_runner(model, backend="openvino", options=RunnerOptions(extra={"banded": 1}))


def test_the_runner_says_which_rewrites_ran(monkeypatch):
    monkeypatch.setattr(rewrite, "BAND_BYTES", 2 * 4 * 32 * 24)
    rng = np.random.default_rng(2)
    feed = {"features": rng.standard_normal((2, 8, 8, 6)).astype(np.float32),
            "hyper": rng.standard_normal((2, 3, 4)).astype(np.float32)}
    model = _sam_upscaling()
    opts = {"both": {}, "banded only": {"channel_last": False}, "neither": {"channel_last": False, "banded": False}}
    runners = {k: open_runner(model, backend="openvino", options=RunnerOptions(threads=1, extra=v)).activate()
               for k, v in opts.items()}
    try:
        notes = {k: r.notes[0] for k, r in runners.items()}
        assert "1 upscaling chain(s) computed in bands, 2 channel contraction(s) computed channel-last" in notes["both"]
        assert "in bands" in notes["banded only"] and "channel-last" not in notes["banded only"]
        assert "in bands" not in notes["neither"] and "channel-last" not in notes["neither"]
        want = runners["neither"].infer(feed)["masks"]
        for r in runners.values():
            np.testing.assert_allclose(r.infer(feed)["masks"], want, rtol=1e-5, atol=1e-5)
    finally:
        for r in runners.values():
            r.deactivate()


def test_the_exported_decoder_is_rewritten_with_the_same_masks(tiny_bundle: Path):
    """The bundle's low-res decoder (SAM's upscaling + hypernetwork product): one contraction
    rewritten, the same masks as without the rewrite."""
    from slimsam_edge.bundle import load_bundle

    b = load_bundle(tiny_bundle)
    path = b.path_of(b.find("mask_decoder_lowres", backend="openvino", precision="fp32"))
    g = b.manifest.image_size // 16
    rng = np.random.default_rng(3)
    n = 2
    feed = {"point_coords": rng.uniform(0, 60, (n, 2, 2)).astype(np.float32),
            "point_labels": np.tile(np.array([[1.0, -1.0]], np.float32), (n, 1)),
            "mask_input": np.zeros((n, 1, 4 * g, 4 * g), np.float32), "has_mask_input": np.zeros(n, np.float32)}
    with open_runner(path, backend="openvino", options=RunnerOptions(threads=1)) as fast, \
            open_runner(path, backend="openvino", options=RunnerOptions(threads=1, extra={"channel_last": False})) as plain:
        assert any("1 channel contraction(s) computed channel-last" in note for note in fast.notes)
        feed["image_embeddings"] = rng.standard_normal(plain.input_specs()["image_embeddings"].shape).astype(np.float32)
        got, want = fast.infer(feed), plain.infer(feed)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_only_a_cpu_compile_is_rewritten():
    """GPU / NPU plugins choose their own layouts: the rewrites are for OpenVINO's CPU plugin only
    (AUTO and MULTI too, unless every device they name is a CPU)."""
    from slimsam_edge.runtimes.openvino.runner import OpenVinoRunner

    runner = OpenVinoRunner(_decoder_tail(), RunnerOptions())
    for device, rewritten in (("CPU", True), ("GPU", False), ("NPU", False), ("AUTO", False),
                              ("AUTO:GPU,CPU", False), ("MULTI:CPU", True)):
        model = _decoder_tail()
        assert bool(runner._rewrite(model, device)) is rewritten, device
        assert (_count(model, "Transpose") == 2) is rewritten, device


def _uniform_mean(x, dims: int, row=None, stride: int = 1):
    c = 8
    if dims == 3:
        return ops.matmul(ops.constant(np.full((1, c), 1 / c, np.float32) if row is None else row), x, False, False)
    return ops.convolution(x, np.full((1, c, 1, 1), 1 / c, np.float32) if row is None else row,
                           [stride, stride], [0, 0], [0, 0], [1, 1])


@pytest.mark.parametrize("dims", [3, 4])
def test_channel_means_become_reduce_means_with_the_same_values(dims):
    shape = [2, 8, 6] if dims == 3 else [2, 8, 5, 4]
    x = ops.parameter(shape, np.float32, name="x")
    plain, fast = (ov.Model([_uniform_mean(x, dims)], [x]) for _ in range(2))
    assert rewrite.channel_means(fast) == 1
    assert _count(fast, "ReduceMean") == 1 and _count(fast, "MatMul") + _count(fast, "Convolution") == 0
    feed = {"x": np.random.default_rng(dims).standard_normal(shape).astype(np.float32)}
    np.testing.assert_allclose(_run(fast, feed), _run(plain, feed), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_run(fast, feed), feed["x"].mean(1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_other_products_are_not_means():
    x3 = ops.parameter([2, 8, 6], np.float32)
    x4 = ops.parameter([2, 8, 6, 6], np.float32)
    weights = np.full((1, 8), 1 / 8, np.float32)
    weights[0, 3] = 0.2
    cases = [ov.Model([_uniform_mean(x3, 3, row=weights)], [x3]),  # not uniform
             ov.Model([_uniform_mean(x3, 3, row=np.full((2, 8), 1 / 16, np.float32))], [x3]),  # two rows
             ov.Model([_uniform_mean(x4, 4, row=np.full((1, 8, 1, 1), 1 / 4, np.float32))], [x4]),  # a sum x2
             ov.Model([_uniform_mean(x4, 4, stride=2)], [x4])]  # strided
    assert [rewrite.channel_means(m) for m in cases] == [0, 0, 0, 0]


def test_a_factored_decoder_export_runs_all_three_rewrites_with_the_same_masks(tmp_path, monkeypatch):
    """sam-mini's decoder exported factored (its layer norms' means as products with a 1/C row, what
    SAM-sized exports run): OpenVINO with the rewrites (the maps made to need bands) gives ONNX
    Runtime's masks and its own without them."""
    import torch

    from slimsam_edge.models import graphs
    from slimsam_edge.models.build import build_sam, random_init_
    from slimsam_edge.models.graph_spec import DECODER_LOWRES, ONNX_SPECS

    monkeypatch.setattr(rewrite, "BAND_BYTES", 4 * 16 * 64 * 16)  # sam-mini's largest map, 16 x 64 x 64: 4 bands
    from slimsam_edge.models.spec import PRESETS

    class Factored(graphs.LowResDecoder):
        factored = True

    sam = random_init_(build_sam(PRESETS["sam_mini"]), seed=0).eval()
    module, spec = Factored(sam).eval(), ONNX_SPECS[DECODER_LOWRES]
    path = tmp_path / "decoder.onnx"
    with torch.no_grad():
        torch.onnx.export(module, module.example_inputs(2, batch=2), str(path), input_names=list(spec.inputs),
                          output_names=list(spec.outputs), dynamic_axes=spec.dynamic_axes, dynamo=False,
                          opset_version=spec.opset)
    feed = {k: v.numpy() for k, v in zip(spec.inputs, module.example_inputs(1, batch=2, seed=4))}
    off = {"channel_means": False, "banded": False, "channel_last": False}
    with open_runner(path, backend="openvino", options=RunnerOptions(threads=1)) as fast, \
            open_runner(path, backend="openvino", options=RunnerOptions(threads=1, extra=off)) as plain, \
            open_runner(path, backend="onnxruntime", options=RunnerOptions(threads=1)) as ort:
        assert ("6 channel mean(s) as ReduceMean, 1 upscaling chain(s) computed in bands, "
                "4 channel contraction(s) computed channel-last") in fast.notes[0]
        got, want, ref = fast.infer(feed), plain.infer(feed), ort.infer(feed)
        for name in ref:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4)
