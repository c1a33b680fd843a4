"""Issue 20 items 6-8 (API half): every input bound of slimsam_edge.limits is refused before the
memory or time it guards is spent, with a one-line typed error; thin images, text files named
.pth and absurd specs end in typed errors, not crashes."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from slimsam_edge import limits
from slimsam_edge.errors import ImageError, SlimSamEdgeError


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(w: int, h: int, rows: int = 1) -> bytes:
    """A small grey PNG whose header says ``w`` x ``h`` (only ``rows`` rows of data follow)."""
    raw = b"".join(b"\x00" + bytes(w) for _ in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text, text
    return text


# ------------------------------------------------------------------ images: pixel budget from the header
def test_png_bomb_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    """A ~50 KB PNG claiming 20000x20000 used to be decoded (8.3 GB in `segment`); now the header
    is read and the image refused before cv2 sees a byte."""
    import cv2

    from slimsam_edge.data import images

    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(20000, 20000, rows=2000))
    assert path.stat().st_size < 100_000

    def no_decode(*a, **k):  # pragma: no cover - reached only on failure
        raise AssertionError("cv2.imdecode called on an image over the pixel budget")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(ImageError, match="20000x20000.*MAX_IMAGE_PIXELS") as err:
        images.read_image(path)
    _one_line(err.value)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff"])
def test_header_size_matches_the_decoded_size_for_every_format(ext):
    import cv2

    from slimsam_edge.data.images import decode_image, image_header

    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    fmt, h, w = image_header(buf.tobytes())
    assert (h, w) == (37, 53) and decode_image(buf.tobytes()).shape == (37, 53, 3)


def test_jpeg_header_after_large_app_segments():
    import cv2

    from slimsam_edge.data.images import image_header

    ok, buf = cv2.imencode(".jpg", np.zeros((9, 11, 3), np.uint8))
    data = buf.tobytes()
    app = b"\xff\xe2" + struct.pack(">H", 65535) + bytes(65533)  # an ICC-sized APP2 segment
    assert image_header(data[:2] + app * 5 + data[2:]) == ("jpeg", 9, 11)


@pytest.mark.parametrize("make", [
    lambda: b"GIF89a" + bytes(20),                    # a format we do not decode
    lambda: png_claiming(4, 4)[:20],                  # header cut off
    lambda: b"\xff\xd8\xff\xda" + bytes(10),          # JPEG: scan before any frame header
    lambda: b"\xff\xd8" + b"\xff\xe0\x00\x00" * 8,    # JPEG: zero-length segment
    lambda: b"II*\x00" + struct.pack("<I", 10**9),     # TIFF: IFD offset past the end
    lambda: b"RIFF\x00\x00\x00\x00WEBPVP8 ",          # WebP cut off
])
def test_unreadable_headers_are_refused_in_one_line(make):
    from slimsam_edge.data.images import decode_image

    with pytest.raises(ImageError, match="jpg/png/bmp/webp/tiff") as err:
        decode_image(make())
    _one_line(err.value)


def test_tiff_tiles_count_against_the_budget():
    """A TIFF's tiles are allocated whole: a 16x16 image with 30000x30000 tiles is refused."""
    from slimsam_edge.data.images import decode_image, image_header

    entries = [(256, 3, 1, 16), (257, 3, 1, 16), (322, 4, 1, 30000), (323, 4, 1, 30000)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4)
    data = b"II*\x00" + struct.pack("<I", 8) + ifd
    assert image_header(data) == ("tiff", 30000, 30000)
    with pytest.raises(ImageError, match="MAX_IMAGE_PIXELS"):
        decode_image(data)


def test_side_limit_bounds_thin_images_too():
    from slimsam_edge.data.images import decode_image

    with pytest.raises(ImageError, match="MAX_IMAGE_SIDE"):
        decode_image(png_claiming(limits.MAX_IMAGE_SIDE + 1, 1))


def test_file_size_limit_is_checked_before_reading(tmp_path, monkeypatch):
    from slimsam_edge.data import images

    path = tmp_path / "huge.png"
    with open(path, "wb") as f:  # sparse: no disk used
        f.write(png_claiming(4, 4))
        f.truncate(limits.MAX_IMAGE_FILE_BYTES + 1)
    monkeypatch.setattr(np, "fromfile", lambda *a, **k: pytest.fail("read a file over the size limit"))
    with pytest.raises(ImageError, match="MAX_IMAGE_FILE_BYTES"):
        images.read_image(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_refused_not_waited_on(tmp_path):
    """Reading a FIFO with no writer blocked forever; it is refused as not a regular file."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    code = ("from slimsam_edge.data.images import read_image\n"
            "from slimsam_edge.errors import ImageError\n"
            f"try:\n    read_image({str(fifo)!r})\nexcept ImageError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "not a regular file" in out.stdout, out.stdout + out.stderr


def test_arrays_over_the_budget_are_refused_by_the_predictor():
    """set_image checks the array's size too (before preprocessing allocates anything)."""
    from slimsam_edge.predictor import EdgePredictor

    class Encoder:
        def infer(self, feed):  # pragma: no cover - reached only on failure
            raise AssertionError("encoder ran")

    p = EdgePredictor(Encoder(), None, image_size=64, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))
    wide = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), (1, limits.MAX_IMAGE_SIDE + 1, 3), (0, 0, 1))
    with pytest.raises(ImageError, match="MAX_IMAGE_SIDE"):
        p.set_image(wide)
    big = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), (20000, 20000, 3), (0, 0, 1))
    with pytest.raises(ImageError, match="MAX_IMAGE_PIXELS"):
        p.set_image(big)


# ------------------------------------------------------------------ thin images (item 7)
class _Encoder:
    def __init__(self, grid: int = 4):
        self.grid = grid

    def infer(self, feed):
        return {"image_embeddings": np.zeros((1, 8, self.grid, self.grid), np.float32)}


class _Decoder:
    """Stands in for the low-res decoder: logits > 0 in the top-left quarter of the low-res mask."""

    def input_specs(self):
        from slimsam_edge.runtimes.base import TensorSpec

        return {"point_coords": TensorSpec("point_coords", np.dtype(np.float32), ("prompts", "points", 2))}

    def max_prompts(self):
        return None

    def infer(self, feed):
        n, side = feed["point_coords"].shape[0], feed["mask_input"].shape[-1]
        low = np.full((n, 4, side, side), -5.0, np.float32)
        low[:, :, : side // 2, : side // 2] = 5.0
        return {"iou_predictions": np.full((n, 4), 0.5, np.float32), "low_res_masks": low}


def _fake_predictor(image_size: int = 64):
    from slimsam_edge.predictor import EdgePredictor

    return EdgePredictor(_Encoder(image_size // 16), _Decoder(), image_size=image_size,
                         pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))


@pytest.mark.parametrize("hw", [(1, 600), (600, 1), (2, 1100), (1, 1), (3, 5000)])
@pytest.mark.parametrize("resize", ["sam", "fast"])
def test_images_thinner_than_1_to_512_are_segmented(hw, resize):
    """A 1x600 image resized to 256 has 0.43 rows: SAM's rounding made it 0 and the resize divided
    by zero. Each side keeps at least one pixel; masks come back at the image's size."""
    from slimsam_edge.transforms import ResizeLongestSide, postprocess_masks, preprocess

    x, input_size = preprocess(np.full(hw + (3,), 200, np.uint8), 256, (0, 0, 0), (1, 1, 1), resize)
    assert x.shape == (1, 3, 256, 256) and max(input_size) == 256
    assert min(input_size) == max(1, round(min(hw) * 256 / max(hw)))
    np.testing.assert_allclose(x[0, :, : input_size[0], : input_size[1]], 200, atol=1)
    assert ResizeLongestSide(256).apply_coords(np.array([[hw[1], hw[0]]], float), hw).max() <= 256
    assert postprocess_masks(np.zeros((3, 64, 64), np.float32), input_size, hw, 256).shape == (3,) + hw
    p = _fake_predictor(256)
    p.resize = resize
    p.set_image(np.zeros(hw + (3,), np.uint8))
    masks, scores, low = p.predict(point_coords=np.array([[0, 0]]), point_labels=np.array([1]))
    assert masks.shape == (3,) + hw and masks.dtype == bool and np.isfinite(scores).all()
    masks, _, _ = p.predict(point_coords=np.array([[0, 0]]), point_labels=np.array([1]), return_logits=True)
    assert masks.shape == (3,) + hw and np.isfinite(masks).all()


# ------------------------------------------------------------------ prompts (items 6 and 8)
def test_thirty_thousand_points_are_refused_before_the_decoder_runs():
    p = _fake_predictor()
    p.set_image(np.zeros((64, 64, 3), np.uint8))
    pts = np.tile([[10.0, 10.0]], (30_000, 1))
    from slimsam_edge.errors import PromptError

    with pytest.raises(PromptError, match="MAX_POINTS_PER_PROMPT") as err:
        p.predict(point_coords=pts, point_labels=np.ones(30_000))
    _one_line(err.value)
    with pytest.raises(PromptError, match="MAX_POINTS_PER_PROMPT"):
        p.predict_batch(pts[None], np.ones((1, 30_000)))
    with pytest.raises(PromptError, match="MAX_PROMPTS"):
        p.predict_batch(np.full((limits.MAX_PROMPTS + 1, 1, 2), 5.0), np.ones((limits.MAX_PROMPTS + 1, 1)))
    p.predict(point_coords=pts[: limits.MAX_POINTS_PER_PROMPT], point_labels=np.ones(limits.MAX_POINTS_PER_PROMPT))


@pytest.mark.parametrize("method, kwargs, fragment", [
    ("predict", dict(point_coords=[["a", "b"]], point_labels=[1]), "point_coords must be an array of numbers"),
    ("predict", dict(point_coords=[[1, 2]], point_labels=["x"]), "point_labels must be an array of numbers"),
    ("predict", dict(box="0 0 10 10"), "box must be an array of numbers"),
    ("predict", dict(point_coords=[[1, 2], [3]], point_labels=[1, 1]), "point_coords must be an array of numbers"),
    ("predict", dict(point_coords=[[1, None]], point_labels=[1]), "point_coords must be an array of numbers"),
    ("predict", dict(point_coords=[[1 + 2j, 2]], point_labels=[1]), "point_coords must be an array of numbers"),
    ("predict", dict(point_coords=[[np.nan, 2]], point_labels=[1]), "point_coords holds NaN"),
    ("predict", dict(point_coords=[[1, 2]], point_labels=[np.inf]), "point_labels holds NaN"),
    ("predict", dict(box=[0, 0, np.inf, 10]), "box holds NaN"),
    ("predict", dict(box=[0, 0, 10, 10], mask_input=np.full((1, 16, 16), np.nan)), "mask_input must hold finite logits"),
    ("predict", dict(box=[0, 0, 10, 10], mask_input=np.full((1, 16, 16), -np.inf)), "mask_input must hold finite logits"),
    ("predict", dict(box=[0, 0, 10, 10], mask_input=np.full((1, 16, 16), 1e30)), "mask_input must hold finite logits"),
    ("predict", dict(box=[0, 0, 10, 10], mask_input=np.full((1, 16, 16), "1")), "mask_input must be an array of numbers"),
    ("predict", dict(box=[0, 0, 10, 10], multimask_output="no"), "multimask_output must be True or False"),
    ("predict", dict(box=[0, 0, 10, 10], multimask_output=None), "multimask_output must be True or False"),
    ("predict", dict(box=[0, 0, 10, 10], return_logits="yes"), "return_logits must be True or False"),
    ("predict", dict(point_coords=[[1, 2]], point_labels=[2]), "point labels must be 1"),
    ("predict_batch", dict(points=[[["a", 1]]], labels=[[1]]), "points must be an array of numbers"),
    ("predict_batch", dict(points=[[[1, 1]]], labels=[[np.nan]]), "labels holds NaN"),
    ("predict_batch", dict(boxes=[[0, 0, np.nan, 5]]), "boxes holds NaN"),
    ("predict_batch", dict(boxes=[[0, 0, 5, 5]], mask_inputs=[np.full((16, 16), np.inf)]), "mask_inputs[0] must hold finite"),
    ("predict_batch", dict(boxes=[[0, 0, 5, 5]], mask_inputs=np.full((1, 16, 16), np.nan)), "mask_inputs must hold finite"),
    ("predict_batch", dict(boxes=[[0, 0, 5, 5]], mask_inputs=[None, np.full((16, 16), np.nan)]), "mask_inputs[1] must hold finite"),
    ("predict_batch", dict(boxes=[[0, 0, 5, 5]], multimask_output="no"), "multimask_output must be True or False"),
])
def test_bad_prompts_are_typed_one_line_errors(method, kwargs, fragment):
    from slimsam_edge.errors import PromptError

    p = _fake_predictor()
    p.set_image(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(PromptError, match=re.escape(fragment)) as err:
        getattr(p, method)(**kwargs)
    _one_line(err.value)


def test_multimask_flag_is_honoured_with_numpy_bools():
    p = _fake_predictor()
    p.set_image(np.zeros((64, 64, 3), np.uint8))
    assert p.predict(box=[0, 0, 9, 9], multimask_output=np.bool_(False))[0].shape == (1, 64, 64)
    assert p.predict(box=[0, 0, 9, 9], multimask_output=True)[0].shape == (3, 64, 64)


# ------------------------------------------------------------------ threads (item 6)
def test_thread_counts_over_the_limit_are_refused_before_a_session(mini_bundle):
    from slimsam_edge.errors import UsageError
    from slimsam_edge.predictor import EdgePredictor
    from slimsam_edge.runtimes import RunnerOptions

    with pytest.raises(UsageError, match="more than the 4 x CPUs") as err:
        EdgePredictor.from_bundle(mini_bundle, backend="onnxruntime", threads=1000)
    _one_line(err.value)
    for bad in (-1, 1.5, "4", True):
        with pytest.raises(UsageError):
            RunnerOptions(threads=bad)
    assert RunnerOptions(threads=limits.max_threads()).threads == limits.max_threads()


# ------------------------------------------------------------------ specs (items 6 and 7)
def _spec_dict(**encoder):
    from slimsam_edge.models.spec import PRESETS

    d = PRESETS["sam_mini"].to_dict()
    d["encoder"].update(encoder)
    return d


@pytest.mark.parametrize("change, fragment", [
    (dict(qkv_dims=[192] * 20_000, mlp_dims=[768] * 20_000), "MAX_BLOCKS"),
    (dict(num_heads=0), "num_heads 0"),
    (dict(img_size=2**40), "img_size 1099511627776"),
    (dict(img_size=1e30), "img_size"),
    (dict(patch_size=0), "patch_size 0"),
    (dict(embed_dim=-4), "embed_dim -4"),
    (dict(embed_dim="wide"), "embed_dim wide must be a whole number"),
    (dict(qkv_dims=[16384] * 12, mlp_dims=[16384] * 12, embed_dim=16384, num_heads=8), "MAX_PARAMS"),
    (dict(img_size=8192, patch_size=1), "MAX_PARAMS"),
])
def test_absurd_encoder_specs_are_refused_before_building(change, fragment, monkeypatch):
    from slimsam_edge.errors import SpecError
    from slimsam_edge.models import build
    from slimsam_edge.models.spec import ModelSpec

    monkeypatch.setattr(build, "build_sam", lambda *a, **k: pytest.fail("built a model from a bad spec"))
    with pytest.raises(SpecError, match=fragment) as err:
        ModelSpec.from_dict(_spec_dict(**change))
    _one_line(err.value)


@pytest.mark.parametrize("change, fragment", [
    (dict(transformer_heads=0), "transformer_heads 0"),
    (dict(transformer_heads=7), "multiple of transformer_heads 7"),
    (dict(transformer_depth=10**6), "MAX_DECODER_DEPTH"),
    (dict(mask_in_chans=2), "mask_in_chans 2"),
])
def test_absurd_decoder_specs_are_refused(change, fragment):
    from slimsam_edge.errors import SpecError
    from slimsam_edge.models.spec import ModelSpec

    d = _spec_dict()
    d["decoder"].update(change)
    with pytest.raises(SpecError, match=fragment):
        ModelSpec.from_dict(d)


@pytest.mark.parametrize("text, fragment", [
    ("[" * 100_000, "nested too deeply"),
    ("[1, 2]", "must be a JSON object"),
    ('{"encoder": 5}', "malformed model spec"),
    ('{"encoder": {}, "pixel_std": [0, 1, 1]}', "malformed model spec"),
])
def test_malformed_spec_json_is_one_line(text, fragment):
    from slimsam_edge.errors import SpecError
    from slimsam_edge.models.spec import ModelSpec

    with pytest.raises(SpecError, match=fragment) as err:
        ModelSpec.from_json(text)
    _one_line(err.value)


def test_spec_pixel_std_zero_is_refused():
    from slimsam_edge.errors import SpecError
    from slimsam_edge.models.spec import ModelSpec

    d = _spec_dict()
    d["pixel_std"] = [58.0, 0.0, 57.0]
    with pytest.raises(SpecError, match="pixel_std"):
        ModelSpec.from_dict(d)


def test_spec_files_are_bounded_and_text(tmp_path):
    from slimsam_edge.errors import SpecError
    from slimsam_edge.models.io import load_spec_file

    big = tmp_path / "big.json"
    big.write_text(" " * (limits.MAX_SPEC_BYTES + 1))
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for path, fragment in ((big, "MAX_SPEC_BYTES"), (binary, "not UTF-8")):
        with pytest.raises(SpecError, match=fragment):
            load_spec_file(path)


# ------------------------------------------------------------------ checkpoints (item 7)
@pytest.mark.parametrize("content", [
    b"hello world\nthis is a text file\n",
    b"just text",
    b"\x80\x05garbage",
    bytes(range(256)) * 4,
    b"PK\x03\x04" + bytes(100),
])
def test_a_text_file_named_pth_is_a_checkpoint_error(tmp_path, content):
    """torch.load raised KeyError on a text file (exit 1, internal error)."""
    from slimsam_edge.errors import CheckpointError
    from slimsam_edge.models.io import load_model

    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="model.pth") as err:
        load_model(path)
    _one_line(err.value)


def test_a_text_file_named_pth_exits_2_through_the_cli(tmp_path):
    from typer.testing import CliRunner

    from helpers import assert_one_line_error
    from slimsam_edge.cli.app import app

    path = tmp_path / "model.pth"
    path.write_text("hello world\n")
    result = CliRunner().invoke(app, ["export", str(path), "--out", str(tmp_path / "b")])
    assert_one_line_error(result, "model.pth")
