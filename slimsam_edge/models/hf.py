"""Read a local Hugging Face ``transformers`` ``SamModel`` folder as a segment-anything state dict.

A ``save_pretrained`` folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``,
possibly sharded) of SAM (``facebook/sam-vit-base``) or a uniform SlimSAM
(``Zigeng/SlimSAM-uniform-77``) is read with safetensors / ``torch.load(weights_only=True)`` and
JSON only: ``transformers`` is not needed, and nothing is downloaded. Every tensor is renamed to
segment-anything's name (:data:`RULES`); the :class:`ModelSpec` comes from ``config.json``
(the decoder's head count is not recoverable from weights alone).

Example:
    >>> hf_to_sam_key("vision_encoder.layers.3.layer_norm1.weight")
    'image_encoder.blocks.3.norm1.weight'
    >>> hf_to_sam_key("prompt_encoder.mask_embed.conv2.bias")
    'prompt_encoder.mask_downscaling.3.bias'
    >>> hf_to_sam_key("mask_decoder.iou_prediction_head.proj_out.weight", mlp_depth=3)
    'mask_decoder.iou_prediction_head.layers.2.weight'

Illustration (not run as a doctest: it needs a downloaded folder)::

    sd, spec = read_hf_dir("sam-vit-base/")
    spec.model_type  # -> 'vit_b'
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..errors import CheckpointError, SlimSamEdgeError
from .spec import DecoderSpec, EncoderSpec, ModelSpec, name_spec

CONFIG_FILE = "config.json"
_WB = r"(weight|bias)"

#: HF name (full match) -> segment-anything name, as ``re.Match.expand`` templates.
RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (rf"vision_encoder\.patch_embed\.projection\.{_WB}", r"image_encoder.patch_embed.proj.\1"),
        (r"vision_encoder\.pos_embed", "image_encoder.pos_embed"),
        (rf"vision_encoder\.layers\.(\d+)\.layer_norm([12])\.{_WB}", r"image_encoder.blocks.\1.norm\2.\3"),
        (rf"vision_encoder\.layers\.(\d+)\.(attn\.(?:qkv|proj)|mlp\.lin[12])\.{_WB}", r"image_encoder.blocks.\1.\2.\3"),
        (r"vision_encoder\.layers\.(\d+)\.attn\.(rel_pos_[hw])", r"image_encoder.blocks.\1.attn.\2"),
        (r"vision_encoder\.neck\.conv1\.weight", "image_encoder.neck.0.weight"),
        (rf"vision_encoder\.neck\.layer_norm1\.{_WB}", r"image_encoder.neck.1.\1"),
        (r"vision_encoder\.neck\.conv2\.weight", "image_encoder.neck.2.weight"),
        (rf"vision_encoder\.neck\.layer_norm2\.{_WB}", r"image_encoder.neck.3.\1"),
        (r"shared_image_embedding\.positional_embedding", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
        (rf"prompt_encoder\.mask_embed\.conv1\.{_WB}", r"prompt_encoder.mask_downscaling.0.\1"),
        (rf"prompt_encoder\.mask_embed\.layer_norm1\.{_WB}", r"prompt_encoder.mask_downscaling.1.\1"),
        (rf"prompt_encoder\.mask_embed\.conv2\.{_WB}", r"prompt_encoder.mask_downscaling.3.\1"),
        (rf"prompt_encoder\.mask_embed\.layer_norm2\.{_WB}", r"prompt_encoder.mask_downscaling.4.\1"),
        (rf"prompt_encoder\.mask_embed\.conv3\.{_WB}", r"prompt_encoder.mask_downscaling.6.\1"),
        (r"prompt_encoder\.point_embed\.(\d+)\.weight", r"prompt_encoder.point_embeddings.\1.weight"),
        (r"prompt_encoder\.(not_a_point_embed|no_mask_embed)\.weight", r"prompt_encoder.\1.weight"),
        (r"mask_decoder\.(iou_token|mask_tokens)\.weight", r"mask_decoder.\1.weight"),
        (rf"mask_decoder\.transformer\.layers\.(\d+)\.layer_norm([1-4])\.{_WB}", r"mask_decoder.transformer.layers.\1.norm\2.\3"),
        (
            rf"mask_decoder\.transformer\.layers\.(\d+)\.((?:self_attn|cross_attn_token_to_image|cross_attn_image_to_token)"
            rf"\.(?:q|k|v|out)_proj|mlp\.lin[12])\.{_WB}",
            r"mask_decoder.transformer.layers.\1.\2.\3",
        ),
        (rf"mask_decoder\.transformer\.final_attn_token_to_image\.((?:q|k|v|out)_proj)\.{_WB}", r"mask_decoder.transformer.final_attn_token_to_image.\1.\2"),
        (rf"mask_decoder\.transformer\.layer_norm_final_attn\.{_WB}", r"mask_decoder.transformer.norm_final_attn.\1"),
        (rf"mask_decoder\.upscale_conv1\.{_WB}", r"mask_decoder.output_upscaling.0.\1"),
        (rf"mask_decoder\.upscale_layer_norm\.{_WB}", r"mask_decoder.output_upscaling.1.\1"),
        (rf"mask_decoder\.upscale_conv2\.{_WB}", r"mask_decoder.output_upscaling.3.\1"),
    )
)

#: HF's MLP heads (``proj_in``, ``layers.N``, ``proj_out``) are segment-anything's ``layers.0..d-1``.
_MLP = re.compile(
    r"(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.(proj_in|layers\.(\d+)|proj_out)\.(weight|bias)"
)
#: tied copies some checkpoints store twice: dropped when the original is present.
_ALIASES = {"prompt_encoder.shared_embedding.positional_embedding": "shared_image_embedding.positional_embedding"}


def hf_to_sam_key(key: str, *, mlp_depth: int = 3) -> str | None:
    """segment-anything's name of HF tensor ``key`` (``None`` if unknown).

    ``mlp_depth`` is the layer count of the MLP head ``key`` belongs to (needed for ``proj_out``).
    """
    key = _ALIASES.get(key, key)
    m = _MLP.fullmatch(key)
    if m:
        index = {"proj_in": 0, "proj_out": mlp_depth - 1}.get(m.group(2))
        return f"{m.group(1)}.layers.{index if index is not None else int(m.group(3)) + 1}.{m.group(4)}"
    for pattern, template in RULES:
        m = pattern.fullmatch(key)
        if m:
            return m.expand(template)
    return None


def hf_to_sam(sd: Mapping[str, torch.Tensor], *, source: Path | str = "weights") -> dict[str, torch.Tensor]:
    """Rename every tensor of a HF ``SamModel`` state dict; raise :class:`CheckpointError` on the first unknown."""
    depths: dict[str, int] = {}
    for key in sd:
        m = _MLP.fullmatch(key)
        if m and m.group(2) != "proj_in" and m.group(4) == "weight":
            depths[m.group(1)] = depths.get(m.group(1), 1) + 1
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        if key in _ALIASES and _ALIASES[key] in sd:
            continue
        m = _MLP.fullmatch(key)
        name = hf_to_sam_key(key, mlp_depth=depths.get(m.group(1), 2) if m else 3)
        if name is None:
            raise CheckpointError(
                f"{source}: Hugging Face tensor {key!r} has no segment-anything name; only SamModel "
                "(SAM / uniform SlimSAM) folders are supported, not SAM-HQ or SAM 2"
            )
        out[name] = tensor
    return out


# --- config.json -> ModelSpec -------------------------------------------------------------

#: transformers' defaults for fields an older config.json may leave out.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "vision_config": {
        "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "image_size": 1024,
        "patch_size": 16, "window_size": 14, "global_attn_indexes": [2, 5, 8, 11],
        "output_channels": 256, "num_channels": 3, "mlp_ratio": 4.0, "mlp_dim": None,
        "use_abs_pos": True, "use_rel_pos": True, "qkv_bias": True, "hidden_act": "gelu",
    },
    "prompt_encoder_config": {"hidden_size": 256, "mask_input_channels": 16, "hidden_act": "gelu"},
    "mask_decoder_config": {
        "hidden_size": 256, "mlp_dim": 2048, "num_hidden_layers": 2, "num_attention_heads": 8,
        "iou_head_depth": 3, "iou_head_hidden_dim": 256, "num_multimask_outputs": 3,
        "attention_downsample_rate": 2, "hidden_act": "relu",
    },
}
#: settings segment-anything's modules hard-code; a config with other values cannot be built.
_FIXED: dict[tuple[str, str], Any] = {
    ("vision_config", "use_abs_pos"): True,
    ("vision_config", "use_rel_pos"): True,
    ("vision_config", "qkv_bias"): True,
    ("vision_config", "hidden_act"): "gelu",
    ("prompt_encoder_config", "hidden_act"): "gelu",
    ("mask_decoder_config", "attention_downsample_rate"): 2,
    ("mask_decoder_config", "hidden_act"): "relu",
}


def spec_from_hf_config(config: Mapping[str, Any], *, source: Path | str = CONFIG_FILE) -> ModelSpec:
    """Build a :class:`ModelSpec` from a ``SamModel`` ``config.json`` dict.

    Example:
        >>> spec_from_hf_config({"model_type": "sam"}).model_type
        'vit_b'
        >>> spec_from_hf_config({"model_type": "sam", "vision_config": {
        ...     "hidden_size": 168, "mlp_dim": 696}}).model_type
        'vit_p77'
    """
    if config.get("model_type", "sam") != "sam":
        raise CheckpointError(
            f"{source}: model_type {config.get('model_type')!r} is not a Hugging Face SamModel "
            "(expected 'sam'); SAM-HQ and SAM 2 are not supported"
        )
    c = {part: {**d, **(config.get(part) or {})} for part, d in _DEFAULTS.items()}
    bad = [f"{p}.{k}={c[p][k]!r} (need {v!r})" for (p, k), v in _FIXED.items() if c[p][k] != v]
    if bad:
        raise CheckpointError(f"{source}: unsupported SamModel setting {bad[0]}")
    v, p, m = c["vision_config"], c["prompt_encoder_config"], c["mask_decoder_config"]
    widths = {v["output_channels"], p["hidden_size"], m["hidden_size"]}
    if len(widths) != 1:
        raise CheckpointError(
            f"{source}: vision output_channels, prompt encoder and mask decoder hidden_size differ "
            f"({v['output_channels']}, {p['hidden_size']}, {m['hidden_size']}); SAM needs them equal"
        )
    depth = int(v["num_hidden_layers"])
    mlp = int(v["mlp_dim"] or v["hidden_size"] * v["mlp_ratio"])
    try:
        encoder = EncoderSpec(
            img_size=int(v["image_size"]), patch_size=int(v["patch_size"]), embed_dim=int(v["hidden_size"]),
            num_heads=int(v["num_attention_heads"]), window_size=int(v["window_size"]),
            global_attn_indexes=tuple(int(i) for i in v["global_attn_indexes"]),
            qkv_dims=(int(v["hidden_size"]),) * depth, mlp_dims=(mlp,) * depth,
            out_chans=int(v["output_channels"]), in_chans=int(v["num_channels"]),
        )
        encoder.validate()
    except (TypeError, ValueError, SlimSamEdgeError) as err:
        raise CheckpointError(f"{source}: vision_config does not describe a SAM encoder ({err})") from None
    decoder = DecoderSpec(
        transformer_depth=int(m["num_hidden_layers"]), transformer_mlp_dim=int(m["mlp_dim"]),
        transformer_heads=int(m["num_attention_heads"]), iou_head_depth=int(m["iou_head_depth"]),
        iou_head_hidden_dim=int(m["iou_head_hidden_dim"]),
        num_multimask_outputs=int(m["num_multimask_outputs"]), mask_in_chans=int(p["mask_input_channels"]),
    )
    return name_spec(ModelSpec("custom", encoder, decoder))


# --- weights ------------------------------------------------------------------------------


def _read_safetensors(files: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    sd: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                sd.update({k: f.get_tensor(k) for k in f.keys()})
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{file}: corrupt safetensors file ({err}); re-download it") from None
    return sd


def _read_bin(files: list[Path]) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            sd.update(torch.load(file, map_location="cpu", weights_only=True))
        except Exception as err:  # any failure is the file's fault; report it in one line
            first = str(err).splitlines()[0][:160] if str(err) else "corrupt"
            raise CheckpointError(f"{file}: cannot be read as a PyTorch state dict ({type(err).__name__}: {first})") from None
    return sd


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        return [index.parent / name for name in sorted(set(weight_map.values()))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{index}: malformed shard index ({type(err).__name__}: {err})") from None


#: weight files in the order transformers prefers them: name -> (list the files, read them).
_WEIGHTS: dict[str, tuple[Callable[[Path], list[Path]], Callable[[list[Path]], dict[str, torch.Tensor]]]] = {
    "model.safetensors": (lambda p: [p], _read_safetensors),
    "model.safetensors.index.json": (_shards, _read_safetensors),
    "pytorch_model.bin": (lambda p: [p], _read_bin),
    "pytorch_model.bin.index.json": (_shards, _read_bin),
}


def is_hf_dir(path: Path | str) -> bool:
    """Whether ``path`` is a folder with a ``config.json`` (a ``save_pretrained`` folder)."""
    return (Path(path) / CONFIG_FILE).is_file()


def read_hf_dir(path: Path | str) -> tuple[dict[str, torch.Tensor], ModelSpec | None]:
    """Read a local HF ``SamModel`` folder: (state dict in segment-anything keys, spec from config).

    Raises:
        CheckpointError: no config.json / weights, corrupt files, another model, an unknown tensor.
    """
    path = Path(path)
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except OSError as err:
        raise CheckpointError(f"{path / CONFIG_FILE}: cannot read ({err.strerror})") from None
    except ValueError as err:
        raise CheckpointError(f"{path / CONFIG_FILE}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / CONFIG_FILE}: not a transformers config (a JSON object)")
    spec = spec_from_hf_config(config, source=path / CONFIG_FILE)
    found = next((name for name in _WEIGHTS if (path / name).is_file()), None)
    if found is None:
        raise CheckpointError(f"{path}: has config.json but no weights (expected one of: {', '.join(_WEIGHTS)})")
    list_files, read = _WEIGHTS[found]
    sd = read(list_files(path / found))
    return hf_to_sam(sd, source=path / found), spec
