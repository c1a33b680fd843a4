"""Issue 20 Build item 3: property-based tests (hypothesis) of the predictor API on the real
sam-mini bundle (ONNX Runtime). Arbitrary images, prompts, flags: every call ends in a valid result
(masks of the image's size, finite scores) or a typed SlimSamEdgeError -- never another exception,
a NaN score, a crash or a hang. Each test prints how many cases it ran (`pytest -s`)."""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from slimsam_edge.errors import SlimSamEdgeError  # noqa: E402

EXAMPLES = 200
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
H, W = 48, 80  # the image the prompt tests run on

#: cases run per test (printed, and summed for docs/reliability.md)
CASES: dict[str, int] = {}


@pytest.fixture(scope="module")
def predictor(mini_bundle):
    from slimsam_edge.predictor import EdgePredictor

    p = EdgePredictor.from_bundle(mini_bundle, backend="onnxruntime", threads=1).activate()
    yield p
    p.close()


class CheckedEncoder:
    """The real encoder's output for one image, returned for any feed after checking the feed is
    what the encoder graph takes (1x3xSxS float32, finite): set_image's fuzzing exercises the
    preprocessing at ~1 ms a case instead of an encoder run, and the real decoder after it."""

    def __init__(self, runner, size: int):
        self.size = size
        self.features = runner.infer({"image": np.zeros((1, 3, size, size), np.float32)})

    def infer(self, feed):
        x = feed["image"]
        assert x.shape == (1, 3, self.size, self.size) and x.dtype == np.float32 and np.isfinite(x).all()
        return self.features


# ------------------------------------------------------------------ strategies
_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
_COORDS = st.one_of(st.floats(-10, 100), _FLOATS, st.sampled_from([0.0, float(W), float(H), 1e300, -1e-300]))
_DTYPES = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8, np.uint8, np.bool_,
                           np.complex64, "<U3", object])


def _arrays(max_dims: int = 4, max_side: int = 5, elements=_COORDS):
    """Arrays of any dtype and rank (mostly floats), including empty ones."""
    floats = hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side),
                        elements=elements)
    other = _DTYPES.flatmap(lambda dt: hnp.arrays(
        dt, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side)))
    return st.one_of(floats, floats, other)


def _junk():
    """Values that are not arrays of numbers."""
    return st.one_of(st.none(), st.text(max_size=6), st.integers(), st.floats(), st.booleans(),
                     st.lists(st.one_of(st.none(), st.text(max_size=2), st.floats()), max_size=3),
                     st.lists(st.lists(st.floats(), max_size=3), max_size=3),
                     st.just({"x": 1}), st.just(b"\x00\x01"))


def _value(array_strategy):
    return st.one_of(st.none(), array_strategy, array_strategy.map(lambda a: a.tolist()), _junk())


def _valid_points():
    return st.integers(1, 6).flatmap(lambda n: st.tuples(
        hnp.arrays(np.float64, (n, 2), elements=st.floats(0, min(H, W))),
        hnp.arrays(np.int64, (n,), elements=st.sampled_from([0, 1]))))


_FLAGS = st.one_of(st.booleans(), st.booleans(), st.booleans(), st.sampled_from(["no", "yes", 0, 1, None, np.bool_(True), 1.0, [True]]))


def _check_result(out, multimask, return_logits, hw) -> None:
    masks, scores, low = out
    c = 3 if multimask else 1
    assert masks.shape[-3:] == (c,) + hw, masks.shape
    assert masks.dtype == (np.float32 if return_logits else bool), masks.dtype
    assert scores.shape[-1] == c and np.isfinite(scores).all(), scores
    assert low.shape[-2] == low.shape[-1] and low.shape[-3] == c and np.isfinite(low).all()
    if return_logits:
        assert np.isfinite(masks).all()


def _count(name: str, n: int) -> None:
    CASES[name] = n
    print(f"\nfuzz {name}: {n} cases, total so far {sum(CASES.values())}")


# ------------------------------------------------------------------ set_image
_IMAGE_SHAPES = st.one_of(
    st.tuples(st.integers(1, 90), st.integers(1, 90), st.just(3)),
    st.tuples(st.just(1), st.integers(1, 3000), st.just(3)),        # thinner than 1:512
    st.tuples(st.integers(1, 3000), st.just(1), st.just(3)),
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),  # wrong ranks / channels / empty
)
_IMAGE_DTYPES = st.one_of(st.just(np.uint8), st.just(np.uint8), st.sampled_from(
    [np.float32, np.float64, np.int32, np.uint16, np.bool_, np.int8, object, "<U2"]))


def test_set_image_with_arbitrary_arrays(predictor):
    from slimsam_edge.predictor import EdgePredictor

    real = predictor
    predictor = EdgePredictor(CheckedEncoder(real.encoder, real.image_size), real.decoder,
                              image_size=real.image_size, pixel_mean=real.pixel_mean, pixel_std=real.pixel_std)
    n = [0]

    @SETTINGS
    @given(shape=_IMAGE_SHAPES, dtype=_IMAGE_DTYPES, fill=st.integers(0, 255),
           noise=st.booleans(), fmt=st.sampled_from(["RGB", "BGR", "rgb", None, 3]),
           as_list=st.integers(0, 20), view=st.sampled_from(["plain", "fortran", "reversed", "readonly"]))
    def case(shape, dtype, fill, noise, fmt, as_list, view):
        n[0] += 1
        size = int(np.prod(shape))
        base = np.random.default_rng(size).integers(0, 256, size) if noise else np.full(size, fill)
        image: object = base.astype(dtype).reshape(shape) if dtype not in (object, "<U2") else \
            np.array(base.reshape(shape), dtype=dtype)
        if view == "fortran" and isinstance(image, np.ndarray):
            image = np.asfortranarray(image)
        elif view == "reversed" and isinstance(image, np.ndarray) and image.ndim:
            image = image[::-1]
        elif view == "readonly" and isinstance(image, np.ndarray):
            image.setflags(write=False)
        if as_list == 0:
            image = image.tolist()  # type: ignore[union-attr]
        try:
            predictor.set_image(image, image_format=fmt)
        except SlimSamEdgeError as err:
            assert "\n" not in str(err)
            return
        h, w = predictor.original_size
        assert (h, w) == tuple(shape[:2])
        for multimask in (True, False):
            out = predictor.predict(point_coords=np.array([[w / 2, h / 2]]), point_labels=np.array([1]),
                                    multimask_output=multimask)
            _check_result(out, multimask, False, (h, w))

    case()
    _count("set_image", n[0])
    assert n[0] >= EXAMPLES // 2


# ------------------------------------------------------------------ predict
def test_predict_with_arbitrary_prompts(predictor):
    predictor.set_image(np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8))
    n = [0]
    ok = [0]
    low_side = predictor.embedding.features.shape[-1] * 4

    @SETTINGS
    @given(valid=_valid_points(), coords=_value(_arrays(max_dims=3)), labels=_value(_arrays(max_dims=2)),
           box=st.one_of(st.none(), st.none(), _value(_arrays(max_dims=2, elements=st.one_of(st.floats(0, 40), _FLOATS))),
                         st.just(np.array([5.0, 5.0, 30.0, 40.0]))),
           mask=st.one_of(st.none(), st.none(), hnp.arrays(np.float32, st.sampled_from([(1, low_side, low_side), (1, 1, low_side, low_side)]),
                                                elements=st.one_of(st.floats(-30, 30, width=32), st.floats(width=32))),
                          _value(_arrays(max_dims=4))),
           use_valid=st.integers(0, 3), multimask=_FLAGS, logits=_FLAGS)
    def case(valid, coords, labels, box, mask, use_valid, multimask, logits):
        n[0] += 1
        if use_valid == 0:  # keep a good share of calls valid up to the fuzzed part
            coords, labels = valid
        elif use_valid == 1:
            coords = valid[0]
        try:
            out = predictor.predict(point_coords=coords, point_labels=labels, box=box, mask_input=mask,
                                    multimask_output=multimask, return_logits=logits)
        except SlimSamEdgeError as err:
            assert "\n" not in str(err)
            return
        ok[0] += 1
        _check_result(out, bool(multimask), bool(logits), (H, W))

    case()
    _count("predict", n[0])
    print(f"  of which valid results: {ok[0]}")
    assert ok[0] > 0


# ------------------------------------------------------------------ predict_batch
def test_predict_batch_with_arbitrary_prompts(predictor):
    predictor.set_image(np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8))
    n = [0]
    ok = [0]
    low_side = predictor.embedding.features.shape[-1] * 4
    good = st.tuples(st.integers(1, 4), st.integers(1, 4)).flatmap(lambda bn: st.tuples(
        hnp.arrays(np.float64, bn + (2,), elements=st.floats(0, min(H, W))),
        hnp.arrays(np.int64, bn, elements=st.sampled_from([-1, 0, 1, 1])),
        hnp.arrays(np.float64, (bn[0], 4), elements=st.floats(0, 40)).map(
            lambda b: np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:]) + 1], 1)),
        st.lists(st.one_of(st.none(), hnp.arrays(np.float32, (low_side, low_side),
                                                 elements=st.floats(-30, 30, width=32))),
                 min_size=bn[0], max_size=bn[0])))

    @SETTINGS
    @given(good=good, points=_value(_arrays(max_dims=4)), labels=_value(_arrays(max_dims=3)),
           boxes=_value(_arrays(max_dims=3)), masks=st.one_of(st.none(), _value(_arrays(max_dims=4)),
                                                              st.lists(st.one_of(st.none(), _arrays(max_dims=3)), max_size=3)),
           which=st.lists(st.sampled_from([True, True, True, False]), min_size=4, max_size=4),
           multimask=_FLAGS, logits=_FLAGS)
    def case(good, points, labels, boxes, masks, which, multimask, logits):
        n[0] += 1
        args = [points, labels, boxes, masks]
        for i, use_good in enumerate(which):
            if use_good:
                args[i] = good[i]
        try:
            out = predictor.predict_batch(*args, multimask_output=multimask, return_logits=logits)
        except SlimSamEdgeError as err:
            assert "\n" not in str(err)
            return
        ok[0] += 1
        _check_result(out, bool(multimask), bool(logits), (H, W))
        assert out[0].shape[0] == out[1].shape[0] == out[2].shape[0] >= 1

    case()
    _count("predict_batch", n[0])
    print(f"  of which valid results: {ok[0]}")
    assert ok[0] > 0
