"""Peer architectures (random weights, latency only): the registry, encoder shapes, parameter
counts against the published ones, and the MACs the registry records against a fresh count."""

from __future__ import annotations

import pytest
import torch

from slimsam_edge.errors import UsageError
from slimsam_edge.models.peers import PEERS, get_peer, peer_names
from slimsam_edge.models.peers.efficientvit import EfficientViTSamEncoder
from slimsam_edge.models.peers.sam import build_peer_encoder, build_peer_sam, count_macs
from slimsam_edge.models.spec import PRESETS
from slimsam_edge.models.stats import count_params, encoder_macs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registry_lists_exactly_the_peers():
    assert peer_names() == ["mobilesam", "sam-b", "efficientvit-sam-l0"] == list(PEERS)
    for name, peer in PEERS.items():
        assert peer.name == name
        assert "random weights: latency only" in peer.label
        assert peer.embed_dim == 256 and peer.embed_grid == 64  # SAM's 256 x 64 x 64 embedding
    assert (PEERS["efficientvit-sam-l0"].image_size, PEERS["mobilesam"].image_size) == (512, 1024)


def test_unknown_peer_is_refused_with_the_list():
    with pytest.raises(UsageError) as err:
        get_peer("sam-h")
    msg = str(err.value)
    assert "\n" not in msg and "sam-h" in msg
    assert all(name in msg for name in PEERS)


def test_reduced_size_must_fit_the_architecture():
    with pytest.raises(UsageError, match="multiple of 32"):
        get_peer("efficientvit-sam-l0").check_size(80)


# reduced input sizes: the embedding is 256 channels at the peer's stride
@pytest.mark.parametrize("name,size", [("mobilesam", 64), ("sam-b", 64), ("efficientvit-sam-l0", 64)])
def test_encoder_gives_a_256_channel_embedding(name, size):
    enc = build_peer_encoder(name, seed=0, image_size=size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = enc(x)
        again = build_peer_encoder(name, seed=0, image_size=size)(x)
    grid = size // PEERS[name].stride
    assert tuple(out.shape) == (1, 256, grid, grid)
    assert torch.isfinite(out).all() and out.std() > 0  # not constant
    assert torch.equal(out, again)  # seeded


def test_efficientvit_l0_at_512_gives_the_64x64_embedding():
    with torch.device("meta"):  # shapes only: no arithmetic runs
        enc = EfficientViTSamEncoder(img_size=512)
        out = enc(torch.empty(1, 3, 512, 512))
    assert tuple(out.shape) == (1, 256, 64, 64)


def _params(name: str) -> dict[str, int]:
    """Encoder (at the peer's size, on the meta device) and decoder parameters."""
    with torch.device("meta"):
        enc = build_peer_encoder(name)
    sam = build_peer_sam(name, image_size=64)  # prompt encoder + mask decoder do not depend on size
    dec = count_params(sam.prompt_encoder) + count_params(sam.mask_decoder)
    return {"encoder": count_params(enc), "decoder": dec, "total": count_params(enc) + dec}


def test_parameter_counts_match_the_published_models():
    counts = {name: _params(name) for name in PEERS}
    assert {n: c["total"] for n, c in counts.items()} == {n: p.params for n, p in PEERS.items()}
    # what each count holds: encoder + SAM's prompt encoder and mask decoder (the same for all)
    assert {c["decoder"] for c in counts.values()} == {4_064_560}
    assert counts["efficientvit-sam-l0"]["encoder"] == 30_728_224
    assert 34_750_000 <= counts["efficientvit-sam-l0"]["total"] <= 34_850_000  # published 34.8M
    assert counts["mobilesam"]["encoder"] == 5_743_892  # TinyViT-5M without its classifier head
    assert counts["sam-b"]["total"] == 93_735_472  # sam_vit_b_01ec64.pth
    for peer in PEERS.values():
        assert abs(peer.params - peer.published_params) <= 0.02 * peer.published_params, peer.name


def test_registry_macs_are_the_counted_ones():
    for name, peer in PEERS.items():
        assert count_macs(name) == peer.encoder_macs, name
    # SAM-B: the attention matmuls agree with the analytic count of models/stats.py
    assert PEERS["sam-b"].encoder_macs["attention"] == encoder_macs(PRESETS["vit_b"].encoder)["attention"]
    assert 34.5e9 < PEERS["efficientvit-sam-l0"].encoder_macs["total"] < 35.1e9  # published: 35 G


def test_peer_sam_has_the_peer_frame():
    sam = build_peer_sam("efficientvit-sam-l0", image_size=64)
    assert sam.spec.model_type == "peer:efficientvit-sam-l0"
    assert (sam.spec.image_size, sam.spec.embed_grid, sam.spec.low_res_size) == (64, 8, 32)
    assert tuple(sam.prompt_encoder.image_embedding_size) == (8, 8)
    assert int(sam.image_encoder.img_size) == 64
