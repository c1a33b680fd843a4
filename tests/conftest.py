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
