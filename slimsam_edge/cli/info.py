"""``slimsam-edge info CKPT|BUNDLE``: model type, per-block widths, parameters and MACs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import emit_json, handle_errors
from .options import JsonOpt, ModelTypeOpt, TrustPickleOpt


@handle_errors
def info(
    checkpoint: Annotated[Optional[Path], typer.Argument(help="SAM / SlimSAM checkpoint, our .safetensors, or a bundle folder (default: the shipped sam-mini)")] = None,
    model_type: ModelTypeOpt = None,
    trust_pickle: TrustPickleOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Describe a model: type, per-block widths, parameters per part, MACs (attention counted)."""
    if checkpoint is None:
        from ..assets import require_reference_model

        checkpoint = require_reference_model()
    if checkpoint.is_dir() and (checkpoint / "manifest.json").exists():
        from ..bundle import load_bundle

        data = load_bundle(checkpoint).summary()
        data["bundle"] = str(checkpoint)  # as the user wrote it
        if json_out:
            emit_json(data)
        else:
            for k, v in data.items():
                typer.echo(f"{k}: {v}")
        return
    from ..models.io import load_model
    from ..models.stats import model_report

    model, spec = load_model(checkpoint, model_type=model_type, trust_pickle=trust_pickle)
    report = model_report(model, spec)
    report["checkpoint"] = str(checkpoint)
    if json_out:
        emit_json(report)
        return
    _print_report(report)


def _print_report(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    e = r["encoder"]
    c.print(f"[bold]{r['checkpoint']}[/]: model type [bold]{r['model_type']}[/], "
            f"image {r['image_size']}x{r['image_size']}, embedding {'x'.join(map(str, r['embedding_shape']))}")
    c.print(f"encoder: embed {e['embed_dim']}, {e['depth']} blocks, {e['num_heads']} heads, "
            f"window {e['window_size']}, global blocks {e['global_attn_indexes']}, "
            f"{'uniform' if e['uniform'] else 'per-block'} widths")
    t = Table("block", "attention", "q/k/v width", "head dim", "MLP width")
    for b in e["blocks"]:
        t.add_row(str(b["index"]), b["attention"], str(b["qkv_dim"]), str(b["head_dim"]), str(b["mlp_dim"]))
    c.print(t)
    p = r["params"]
    macs = r["macs"]["image_encoder"]
    t2 = Table("part", "parameters", "MACs")
    t2.add_row("image encoder", f"{p['image_encoder'] / 1e6:.2f}M",
               f"{macs['total'] / 1e9:.1f}G ({macs['linear_conv'] / 1e9:.1f}G linear/conv "
               f"+ {macs['attention'] / 1e9:.1f}G attention matmuls)")
    t2.add_row("prompt encoder", f"{p['prompt_encoder'] / 1e6:.3f}M", "")
    t2.add_row("mask decoder", f"{p['mask_decoder'] / 1e6:.2f}M",
               f"{r['macs']['decoder_per_prompt'] / 1e9:.2f}G per prompt (with prompt encoder)")
    t2.add_row("total", f"{p['total'] / 1e6:.2f}M", "")
    c.print(t2)
