"""Tiny models and images shared by the tests."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from slimsam_edge.models.spec import PRESETS, ModelSpec

MINI = PRESETS["sam_mini"]

#: a 4-block SAM (global attention in blocks 1 and 3) with per-block widths, 256x256 input
TINY_SPEC: ModelSpec = replace(
    MINI,
    model_type="custom",
    encoder=replace(
        MINI.encoder, embed_dim=64, num_heads=4, global_attn_indexes=(1, 3),
        qkv_dims=(64, 48, 32, 64), mlp_dims=(128, 96, 64, 100), out_chans=64,
    ),
)


def tiny_sam(seed: int = 0, spec: ModelSpec = TINY_SPEC):
    """A random-weight SAM whose masks are neither empty nor full (default init + rel-pos noise)."""
    import torch

    from slimsam_edge.models.build import build_sam

    torch.manual_seed(seed)
    sam = build_sam(spec)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "rel_pos" in name or "pos_embed" in name:
                p.normal_(0, 0.02)
        # a freshly initialised decoder emits logits of std ~0.03, so a 1e-3 difference flips
        # pixels; scale the mask heads so logits spread like a trained model's (std ~1)
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(30.0)
    return sam


def photo(hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A photo-like RGB image with objects (procedural generator)."""
    from slimsam_edge.data.procedural import generate_sample

    return generate_sample(seed, hw)[0]


def assert_one_line_error(result, *fragments: str) -> str:
    """A CLI result that failed as a user error: exit 2, one ``error: ...`` line holding every
    fragment, no traceback. Returns that line."""
    assert result.exit_code == 2, result.output
    err = result.stderr if hasattr(result, "stderr") else result.output
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in result.output
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


def doctor_reference(bundle_dir, key: str, change, *, rehash: bool = True) -> None:
    """Rewrite a bundle's reference npz with array ``key`` replaced by ``change(array)``; with
    ``rehash`` its sha256 in manifest.json is updated too, so only the agreement check can tell."""
    import json
    from pathlib import Path

    from slimsam_edge.fsutil import sha256_file

    root = Path(bundle_dir)
    manifest = json.loads((root / "manifest.json").read_text())
    rel = manifest["reference"]["path"]
    with np.load(root / rel, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[key] = change(arrays[key])
    with open(root / rel, "wb") as f:
        np.savez_compressed(f, **arrays)
    if rehash:
        manifest["files"][rel] = sha256_file(root / rel)
        (root / "manifest.json").write_text(json.dumps(manifest, indent=2))


def tiny_compress_spec(img_size: int = 64, window_size: int = 2) -> ModelSpec:
    """A 3-block sam-mini-like spec for compression tests (block 1 global, embed 48, 4 heads)."""
    from dataclasses import replace

    from slimsam_edge.models.spec import PRESETS

    m = PRESETS["sam_mini"]
    return replace(m, model_type="custom", encoder=replace(
        m.encoder, img_size=img_size, window_size=window_size, embed_dim=48, num_heads=4, global_attn_indexes=(1,),
        qkv_dims=(48, 48, 48), mlp_dims=(96, 96, 96), out_chans=32),
        decoder=replace(m.decoder, transformer_depth=1, transformer_mlp_dim=64, iou_head_hidden_dim=32, mask_in_chans=8))


def run_command(command, *args):
    """``command`` (a Typer command function) run with ``args`` through a CliRunner."""
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command()(command)
    return CliRunner().invoke(app, [str(a) for a in args])
