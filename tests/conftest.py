from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_model():
    from helpers import tiny_sam

    return tiny_sam(0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model):
    from slimsam_edge.models.io import save_model

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(tiny_model, tiny_model.spec, path)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_model):
    """A validated cpu bundle (ONNX Runtime + OpenVINO + torch) of the tiny model."""
    from slimsam_edge.exporters.bundle_export import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "tiny"
    export_bundle(tiny_model, tiny_model.spec, out, target="cpu", model_id="tiny")
    return out


@pytest.fixture(scope="session")
def mini_bundle(tmp_path_factory):
    """The shipped sam-mini exported for ONNX Runtime (model.safetensors is kept in the bundle)."""
    from slimsam_edge.assets import reference_model_path
    from slimsam_edge.exporters.bundle_export import export_bundle
    from slimsam_edge.models.io import load_model

    sam, spec = load_model(reference_model_path())
    out = tmp_path_factory.mktemp("mini") / "sam_mini"
    export_bundle(sam, spec, out, target="onnx", model_id="sam_mini", validate=False)
    return out


@pytest.fixture()
def ctrl_c():
    """``_thread.interrupt_main`` as Ctrl-C: makes sure SIGINT raises KeyboardInterrupt (a shell's
    background job inherits SIGINT ignored, and interrupt_main then does nothing), restored after."""
    import _thread
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield _thread.interrupt_main
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture()
def one_torch_thread():
    """torch on one intra-op thread for the test (small inputs: as fast, and it leaves the other
    cores to other processes); use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
