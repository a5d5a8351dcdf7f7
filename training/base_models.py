"""The frozen host models (checkpoint, CLIP vision) and the trainable subject encoder.

The base checkpoint and the CLIP vision model are loaded with ComfyUI's own loaders and frozen (no
gradients, eval mode). The subject encoder is new (sizes from the flags, nested projections
initialised from each layer's own text ``to_k``/``to_v``, as IP-Adapter initialises ``to_k_ip``/
``to_v_ip``) or warm-started with ``--init`` from our weights or an IP-Adapter Plus file, which
must be made for the checkpoint's base family.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..nested_attention_core.encoder import EncoderConfig, SubjectEncoder
from ..nested_attention_core.errors import ModelMismatchError, NestedAttentionError
from ..nested_attention_core.families import ModelFamily
from ..nested_attention_core.layers import LayerSpec
from ..nested_attention_core.weights import load_weights
from ..nodes import host

from .config import TrainConfig
from .errors import TrainingConfigError

log = logging.getLogger(__name__)

ENCODER_FLAGS = {"num_tokens": "num_tokens", "encoder_width": "width", "encoder_depth": "depth",
                 "encoder_heads": "heads", "encoder_dim_head": "dim_head", "encoder_ff_mult": "ff_mult"}


@dataclass(frozen=True, eq=False)
class BaseModels:
    patcher: object  # comfy ModelPatcher of the checkpoint's UNet (unpatched)
    clip: object
    vae: object
    clip_vision: object
    checkpoint: Path
    clip_vision_path: Path
    model_family: ModelFamily  # with the layers the walk found in this checkpoint
    image_feature_dim: int

    @property
    def family(self) -> str:
        return self.model_family.name  # "sd15", "sdxl", ..., or "context<dim>" for an unknown layout

    @property
    def context_dim(self) -> int:
        return self.model_family.context_dim

    @property
    def layers(self) -> list[LayerSpec]:
        return list(self.model_family.layers)


def resolve_model_file(value: str, folders: str | tuple[str, ...], option: str) -> Path:
    """A path, or a file name in one of ComfyUI's model folders."""
    path = Path(value).expanduser()
    if path.is_file():
        return path.resolve()
    import folder_paths

    folders = (folders,) if isinstance(folders, str) else folders
    for folder in folders:
        if folder in folder_paths.folder_names_and_paths:
            found = folder_paths.get_full_path(folder, value)
            if found:
                return Path(found)
    where = " or ".join(f"models/{folder}" for folder in folders)
    raise TrainingConfigError(f"{option} {value}: no such file, nor a file of that name in ComfyUI's {where}; "
                              "give the path of the file")


def load_base_models(config: TrainConfig) -> BaseModels:
    """The frozen models. With mixed precision the UNet is loaded in the autocast dtype, so that its
    weights are not cast at every op (an fp16 checkpoint run in bf16 would also lose precision)."""
    import comfy.clip_vision
    import comfy.model_management
    import comfy.sd
    import folder_paths

    from .optim import autocast_dtype

    amp_device = comfy.model_management.get_torch_device()
    amp = autocast_dtype(config.precision, amp_device)

    checkpoint = resolve_model_file(config.checkpoint, "checkpoints", "--checkpoint")
    clip_vision_path = resolve_model_file(config.clip_vision, "clip_vision", "--clip-vision")
    try:
        patcher, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
            str(checkpoint), output_vae=True, output_clip=True,
            embedding_directory=folder_paths.get_folder_paths("embeddings"),
            model_options={"dtype": amp} if amp is not None and amp_device.type == "cuda" else {})
    except RuntimeError as err:
        raise TrainingConfigError(f"--checkpoint {checkpoint} cannot be loaded by ComfyUI ({err}); give a single-file "
                                  "SD1.5 or SDXL checkpoint") from None
    if clip is None or vae is None:
        raise TrainingConfigError(f"--checkpoint {checkpoint} has no {'text encoder' if clip is None else 'VAE'}: give "
                                  "a single-file checkpoint with UNet, text encoder and VAE")
    clip_vision = comfy.clip_vision.load(str(clip_vision_path))
    if clip_vision is None:
        raise TrainingConfigError(f"--clip-vision {clip_vision_path} is not a CLIP vision model ComfyUI recognises; "
                                  "give a CLIP vision file such as CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors")
    for module in (patcher.model, clip.cond_stage_model, vae.first_stage_model, clip_vision.model):
        module.eval().requires_grad_(False)
    with torch.no_grad():
        probe = clip_vision.encode_image(torch.full((1, 64, 64, 3), 0.5), crop=True)["penultimate_hidden_states"]
    family = host.model_family(patcher)
    if not family.layers:
        raise TrainingConfigError(f"--checkpoint {checkpoint} has no cross-attention layers to train on")
    return BaseModels(patcher, clip, vae, clip_vision, checkpoint, clip_vision_path, family, int(probe.shape[-1]))


def encoder_config(config: TrainConfig, models: BaseModels) -> EncoderConfig:
    base = models.model_family.encoder
    sizes = {ours: getattr(config, flag) for flag, ours in ENCODER_FLAGS.items() if getattr(config, flag) is not None}
    values = {**base.__dict__, **sizes, "image_feature_dim": models.image_feature_dim, "output_dim": models.context_dim}
    try:
        return EncoderConfig(**values)
    except NestedAttentionError as err:
        raise TrainingConfigError(f"encoder sizes: {err}") from None


def build_encoder(config: TrainConfig, models: BaseModels) -> tuple[SubjectEncoder, str]:
    """The trainable encoder (float32, train mode) and where it came from ("new" or the --init file)."""
    if config.init:
        return _warm_start(config, models), str(config.init)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        encoder = SubjectEncoder(encoder_config(config, models), models.layers)
    attn2 = host.attention_modules(models.patcher)
    with torch.no_grad():
        for layer in models.layers:
            projection = encoder.nested_layers[layer.id]
            projection.to_k.weight.copy_(attn2[layer.id].to_k.weight.float())
            projection.to_v.weight.copy_(attn2[layer.id].to_v.weight.float())
    return encoder.float().train().requires_grad_(True), "new"


def _warm_start(config: TrainConfig, models: BaseModels) -> SubjectEncoder:
    init = resolve_model_file(config.init, ("nested_attention", "ipadapter"), "--init")
    weights = load_weights(init)
    try:
        host.check_fits_model(models.patcher, weights.base_family, weights.context_dim, weights.layers,
                                 f"--init {init}")
    except ModelMismatchError as err:
        raise TrainingConfigError(f"{err}. --checkpoint is {models.checkpoint}; give --init weights of its base family "
                                  f"({models.model_family.display_name}), or leave --init out") from None
    if weights.config.image_feature_dim != models.image_feature_dim:
        raise TrainingConfigError(
            f"--init {init} expects {weights.config.image_feature_dim}-wide CLIP vision features but --clip-vision "
            f"{models.clip_vision_path} gives {models.image_feature_dim}: use the CLIP vision model the init weights "
            "were made with (ViT-H, 1280, for IP-Adapter Plus)")
    ignored = [f"--{flag.replace('_', '-')}" for flag in ENCODER_FLAGS if getattr(config, flag) is not None]
    if ignored:
        log.warning("%s ignored: the encoder sizes come from --init %s (%s)", ", ".join(ignored), init,
                    weights.config.to_json())
    log.info("warm start from %s", weights.describe())
    return weights.encoder.float().train().requires_grad_(True)
