"""Bundle integrity (issue 20 items 3-4): nothing outside the bundle folder is read, no symbolic
link inside it is followed, and what a session loads is exactly what was hashed at that moment.

Every test works on a copy of the session's ``mini_bundle`` (sam-mini for ONNX Runtime). The copy
hard-links the big files, so a test never writes into a file in place: it replaces it
(:func:`_replace`), and the session's bundle stays intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import assert_one_line_error
from slimsam_edge.bundle import load_bundle
from slimsam_edge.errors import BundleError

DEC = "onnx/mask_decoder.onnx"
HAS_FIFO = hasattr(os, "mkfifo")


@pytest.fixture()
def bundle(mini_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(mini_bundle, out, copy_function=os.link)
    return out


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` as a new file at ``path`` (never into the hard-linked original)."""
    path.unlink()
    path.write_bytes(data)


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _set_files(root: Path, graph: str, files: dict[str, bytes]) -> None:
    """Make the onnxruntime artifact of ``graph`` list exactly ``files`` (hashed from the bytes)."""
    m = _manifest(root)
    for art in m["artifacts"]:
        if art["graph"] == graph and art["backend"] == "onnxruntime":
            art["files"] = {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    _replace(root / "manifest.json", json.dumps(m, indent=2).encode())


def _tweaked(root: Path, rel: str) -> bytes:
    """The graph ``rel`` with one weight changed: a valid graph that loads and runs."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(root / rel))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 0.5, init.name))
    return model.SerializeToString()


def _external(root: Path) -> tuple[bytes, bytes]:
    """The decoder as a graph + ``mask_decoder.onnx.data`` (external data), both written in place."""
    onnx = pytest.importorskip("onnx")

    model = onnx.load(str(root / DEC))
    tmp = root / "tmp_ext"
    tmp.mkdir()
    onnx.save(model, str(tmp / "mask_decoder.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="mask_decoder.onnx.data", size_threshold=1024)
    graph, data = (tmp / "mask_decoder.onnx").read_bytes(), (tmp / "mask_decoder.onnx.data").read_bytes()
    shutil.rmtree(tmp)
    _replace(root / DEC, graph)
    (root / "onnx" / "mask_decoder.onnx.data").write_bytes(data)
    return graph, data


def _decoder_runner(root: Path):
    from slimsam_edge.predictor import open_artifact

    b = load_bundle(root)
    return open_artifact(b.root, b.find("mask_decoder", "onnxruntime", "fp32"))


def _decoder_feed(runner) -> dict[str, np.ndarray]:
    specs = runner.input_specs()
    feed = {}
    for name, spec in specs.items():
        shape = tuple(d if isinstance(d, int) else 1 for d in spec.shape)
        feed[name] = np.full(shape, 0.25, dtype=spec.dtype)
    feed["orig_im_size"] = np.array([64, 64], dtype=specs["orig_im_size"].dtype)
    return feed


# -- symbolic links ----------------------------------------------------------------------------

def test_symlinked_artifact_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    os.replace(bundle / DEC, outside)  # the same bytes: only the link gives it away
    (bundle / DEC).symlink_to(outside)
    with pytest.raises(BundleError, match=r"onnx/mask_decoder.onnx is a symbolic link.*cp --dereference"):
        load_bundle(bundle)
    from slimsam_edge.cli.app import app

    result = CliRunner().invoke(app, ["info", str(bundle)])
    assert_one_line_error(result, "mask_decoder.onnx is a symbolic link")


def test_symlinked_folder_is_refused(bundle: Path, tmp_path: Path) -> None:
    os.replace(bundle / "onnx", tmp_path / "elsewhere")
    (bundle / "onnx").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(BundleError, match=r": onnx is a symbolic link"):
        load_bundle(bundle)


def test_symlink_pointing_inside_the_bundle_is_refused_too(bundle: Path) -> None:
    """The rule is simple: no symbolic link below the bundle folder, wherever it points."""
    os.replace(bundle / DEC, bundle / "onnx" / "real.onnx")
    (bundle / DEC).symlink_to("real.onnx")
    with pytest.raises(BundleError, match="onnx/mask_decoder.onnx is a symbolic link"):
        load_bundle(bundle)


def test_symlinked_manifest_is_refused(bundle: Path, tmp_path: Path) -> None:
    os.replace(bundle / "manifest.json", tmp_path / "manifest.json")
    (bundle / "manifest.json").symlink_to(tmp_path / "manifest.json")
    with pytest.raises(BundleError, match="manifest.json is a symbolic link"):
        load_bundle(bundle)


def test_a_link_to_the_bundle_folder_itself_is_fine(bundle: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(bundle, target_is_directory=True)
    b = load_bundle(link)
    assert b.root == link
    with _decoder_runner(link) as r:
        assert "masks" in r.output_specs()


# -- hashed when loaded ------------------------------------------------------------------------

def test_file_swapped_after_from_bundle_is_refused(bundle: Path) -> None:
    from slimsam_edge.predictor import EdgePredictor

    p = EdgePredictor.from_bundle(bundle, backend="onnxruntime", precision="fp32")
    rel = "onnx/mask_decoder_lowres.onnx"  # the predictor's decoder
    _replace(bundle / rel, _tweaked(bundle, rel))  # valid, loads, gives other masks
    with pytest.raises(BundleError, match=f"{rel} was modified or corrupted"):
        p.decoder.activate()


def test_unlisted_external_data_is_refused(bundle: Path) -> None:
    graph, _data = _external(bundle)
    _set_files(bundle, "mask_decoder", {DEC: graph})  # the graph is listed, its .data is not
    runner = _decoder_runner(bundle)
    with pytest.raises(BundleError, match="mask_decoder.onnx.data, which the manifest does not list"):
        runner.activate()


def test_listed_external_data_loads_from_verified_bytes(bundle: Path) -> None:
    plain = _decoder_runner(bundle)
    feed = _decoder_feed(plain)
    want = plain.infer(feed)["masks"]
    graph, data = _external(bundle)
    _set_files(bundle, "mask_decoder", {DEC: graph, "onnx/mask_decoder.onnx.data": data})
    runner = _decoder_runner(bundle)
    (bundle / "onnx" / "mask_decoder.onnx.data").unlink()  # read at load time: taken from the bytes
    with pytest.raises(BundleError, match="mask_decoder.onnx.data is missing"):
        runner.activate()
    (bundle / "onnx" / "mask_decoder.onnx.data").write_bytes(data)
    np.testing.assert_array_equal(runner.infer(feed)["masks"], want)


def test_listed_external_data_tampered_after_load_is_refused(bundle: Path) -> None:
    graph, data = _external(bundle)
    _set_files(bundle, "mask_decoder", {DEC: graph, "onnx/mask_decoder.onnx.data": data})
    runner = _decoder_runner(bundle)  # hashes checked here
    half = data[: len(data) // 2] + bytes(len(data) - len(data) // 2)  # half-zeroed weights
    _replace(bundle / "onnx" / "mask_decoder.onnx.data", half)
    with pytest.raises(BundleError, match="mask_decoder.onnx.data was modified or corrupted"):
        runner.activate()


def test_reference_swapped_after_load_is_refused(bundle: Path) -> None:
    from slimsam_edge.deploy.reference_io import load_reference

    b = load_bundle(bundle)
    rel = b.manifest.reference["path"]
    with np.load(bundle / rel, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    (bundle / rel).unlink()
    np.savez(bundle / rel, **arrays)  # the same arrays, other bytes
    with pytest.raises(BundleError, match="reference/io.npz was modified or corrupted"):
        load_reference(b)


# -- not a regular file ------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_FIFO, reason="no FIFOs on this OS")
def test_fifo_in_place_of_an_artifact_is_refused(bundle: Path) -> None:
    (bundle / DEC).unlink()
    os.mkfifo(bundle / DEC)
    with pytest.raises(BundleError, match="onnx/mask_decoder.onnx is a FIFO, not a regular file"):
        load_bundle(bundle)


@pytest.mark.skipif(not HAS_FIFO, reason="no FIFOs on this OS")
@pytest.mark.parametrize("rel", [DEC, "onnx/mask_decoder.onnx.data"])
def test_fifo_swapped_in_after_load_does_not_hang(bundle: Path, rel: str) -> None:
    """A FIFO opened for reading blocks until a writer comes: the load must refuse it instead. The
    subprocess's timeout only bounds the test (a hang would otherwise stop the suite)."""
    if rel != DEC:
        graph, data = _external(bundle)
        _set_files(bundle, "mask_decoder", {DEC: graph, rel: data})
    script = textwrap.dedent(f"""
        import os, sys
        from slimsam_edge.bundle import load_bundle
        from slimsam_edge.errors import SlimSamEdgeError
        from slimsam_edge.predictor import open_artifact
        b = load_bundle({str(bundle)!r})
        runner = open_artifact(b.root, b.find("mask_decoder", "onnxruntime", "fp32"))
        os.unlink(b.root / {rel!r}); os.mkfifo(b.root / {rel!r})
        try:
            runner.activate()
        except SlimSamEdgeError as err:
            print(err); sys.exit(2)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{rel} is a FIFO, not a regular file" in done.stdout


# -- OpenVINO and TensorRT load from verified bytes too ---------------------------------------

def _affine_onnx(path: Path, scale: float = 2.0) -> Path:
    """y = x * scale + 1 with x: float32 [batch, 3] (a graph small enough to convert in a moment)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])],
        "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [3], [scale] * 3),
                     helper.make_tensor("one", TensorProto.FLOAT, [3], [1.0] * 3)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _add_artifact(root: Path, backend: str, precision: str, files: list[str]) -> None:
    m = _manifest(root)
    m["artifacts"].append({"graph": "mask_decoder", "backend": backend, "precision": precision, "path": files[0],
                           "files": {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in files}})
    _replace(root / "manifest.json", json.dumps(m, indent=2).encode())


def _open(root: Path, backend: str, precision: str):
    from slimsam_edge.predictor import open_artifact

    b = load_bundle(root)
    return open_artifact(b.root, b.find("mask_decoder", backend, precision))


def test_openvino_ir_loads_from_verified_bytes(bundle: Path, tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino")
    (bundle / "openvino").mkdir()
    xml = bundle / "openvino" / "affine.xml"
    ov.save_model(ov.convert_model(str(_affine_onnx(tmp_path / "affine.onnx"))), str(xml))
    binary = xml.with_suffix(".bin")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    _add_artifact(bundle, "openvino", "fp32", ["openvino/affine.xml", "openvino/affine.bin"])
    with _open(bundle, "openvino", "fp32") as r:
        np.testing.assert_allclose(r.infer({"x": x})["y"], x * 2 + 1)
    runner = _open(bundle, "openvino", "fp32")
    _replace(binary, bytes(len(binary.read_bytes())))  # zeroed weights after the load
    with pytest.raises(BundleError, match="openvino/affine.bin was modified or corrupted"):
        runner.activate()


def test_openvino_unlisted_weights_are_refused(bundle: Path, tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino")
    (bundle / "openvino").mkdir()
    xml = bundle / "openvino" / "affine.xml"
    ov.save_model(ov.convert_model(str(_affine_onnx(tmp_path / "affine.onnx"))), str(xml))
    _add_artifact(bundle, "openvino", "fp32", ["openvino/affine.xml"])  # the .bin is not listed
    with pytest.raises(BundleError, match="affine.bin, which the manifest does not list"):
        _open(bundle, "openvino", "fp32").activate()


def test_tensorrt_engine_loads_from_verified_bytes(bundle: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import fake_tensorrt

    trt, _ = fake_tensorrt.install(monkeypatch, "10.3.0")
    from slimsam_edge.runtimes.tensorrt.build import build_engine

    engine = build_engine(_affine_onnx(tmp_path / "affine.onnx"), bundle / "engines" / "affine.engine",
                          min_opt_max_shapes={"x": ((1, 3), (2, 3), (8, 3))})
    _add_artifact(bundle, "tensorrt", "fp16", ["engines/affine.engine"])
    read: list[int] = []
    real = trt.Runtime.deserialize_cuda_engine
    monkeypatch.setattr(trt.Runtime, "deserialize_cuda_engine", lambda self, blob: read.append(len(blob)) or real(self, blob))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with _open(bundle, "tensorrt", "fp16") as r:
        np.testing.assert_allclose(r.infer({"x": x})["y"], x * 2 + 1)
    assert read == [engine.stat().st_size]
    runner = _open(bundle, "tensorrt", "fp16")
    other = build_engine(_affine_onnx(tmp_path / "other.onnx", 3.0), tmp_path / "other.engine",
                         min_opt_max_shapes={"x": ((1, 3), (2, 3), (8, 3))})
    _replace(engine, other.read_bytes())  # an engine that loads and computes something else
    with pytest.raises(BundleError, match="engines/affine.engine was modified or corrupted"):
        runner.activate()


def test_build_parses_a_verified_copy_of_its_source(bundle: Path, tmp_path: Path) -> None:
    """`slimsam-edge build` hands TensorRT's parser (which reads a path) a private copy made from
    verified bytes: a source swapped after the load is refused, an unlisted .data is left behind."""
    b = load_bundle(bundle)
    (bundle / "onnx" / "mask_decoder.onnx.data").write_bytes(b"not listed")
    copy = b.copy_verified(DEC, tmp_path / "src")
    assert sorted(p.name for p in copy.parent.iterdir()) == ["mask_decoder.onnx"]
    assert copy.read_bytes() == (bundle / DEC).read_bytes()
    _replace(bundle / DEC, _tweaked(bundle, DEC))
    with pytest.raises(BundleError, match="onnx/mask_decoder.onnx was modified or corrupted"):
        b.copy_verified(DEC, tmp_path / "src2")


def test_a_huge_manifest_is_refused_before_it_is_read(bundle: Path) -> None:
    manifest = bundle / "manifest.json"
    manifest.unlink()
    with open(manifest, "wb") as f:
        f.truncate(64 * 2**30)  # sparse: 64 GiB that would be read into memory
    with pytest.raises(BundleError, match=r"manifest.json holds 65536 MiB, more than .* \(16 MiB\)"):
        load_bundle(bundle)


def test_open_inside_never_leaves_the_folder(tmp_path: Path) -> None:
    """Property: whatever relative path a manifest names, a bundle file is opened inside the folder
    and is a regular file, or the path is refused with a BundleError (never another exception)."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from slimsam_edge.fsutil import open_inside

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.onnx").write_bytes(b"a")
    (root / "sub" / "b.bin").write_bytes(b"b")
    (tmp_path / "secret").write_bytes(b"s")
    (root / "out").symlink_to(tmp_path / "secret")
    (root / "outdir").symlink_to(tmp_path, target_is_directory=True)
    (root / "in").symlink_to("a.onnx")
    if HAS_FIFO:
        os.mkfifo(root / "fifo")
    names = st.sampled_from(["a.onnx", "sub", "b.bin", "out", "outdir", "in", "fifo", "secret", "..", ".",
                             "", "root", "/", "\\", "nope", "sub/", "//"])
    paths = st.one_of(st.lists(names, min_size=1, max_size=4).map("/".join), st.text(max_size=12))
    real = root.resolve()
    regular = {(root / "a.onnx").stat().st_ino, (root / "sub" / "b.bin").stat().st_ino}

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(paths)
    def check(rel: str) -> None:
        try:
            fd = open_inside(root, rel, "bundle")
        except BundleError as err:
            assert "\n" not in str(err)
            return
        try:
            target = Path(os.readlink(f"/proc/self/fd/{fd}")) if Path("/proc/self/fd").is_dir() else None
            assert target is None or target.is_relative_to(real), (rel, target)
            assert os.fstat(fd).st_ino in regular, rel  # one of the two regular files, never through a link
        finally:
            os.close(fd)

    check()
