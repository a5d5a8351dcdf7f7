"""Everything a run needs, built once: models, data, features, encoder, patched UNet, optimizer.

``open_session`` expects ComfyUI to be bootstrapped and the pack importable (``cli.py`` does
that; so do the test fixtures). The loop (loop.py), the tests and the benchmark all start here.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Optional

import torch

from ..nested_attention_core.weights import layers_to_json, save_weights

from .cache import FeatureCache, file_identity
from .. import load_module_file
from ..nodes import host
from .config import TrainConfig
from .data import TrainingData, describe_subjects, scan_data_folder
from .dist import DataOrder, DistContext, broadcast_module
from .features import FeatureStore, HostEncoders, literal_text
from .logbook import require_tensorboard
from .method import NESTED_TRAINING
from .base_models import BaseModels, build_encoder, load_base_models
from .optim import autocast_dtype, make_grad_scaler, make_optimizer, make_scheduler
from .step import Denoiser

log = logging.getLogger(__name__)


@dataclass(eq=False)
class TrainingSession:
    config: TrainConfig  # resolved for the base family
    dist: DistContext
    models: BaseModels
    data: TrainingData
    encoders: HostEncoders
    store: FeatureStore
    encoder: torch.nn.Module  # nested_attention_core SubjectEncoder
    encoder_source: str
    method: object  # what is trained and how the encoder reaches the UNet (method.py)
    parameters: list  # the encoder's trained parameters: method.trainable(encoder)
    denoiser: Denoiser
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: object
    autocast_dtype: Optional[torch.dtype]
    order: DataOrder
    identity: dict  # what a resumed state must agree on

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    def has_word(self, text: str, word: str) -> bool:
        return word_matcher(self.models.clip)(text, word)

    def save_weights(self, path) -> None:
        save_weights(path, self.encoder, self.models.family, self.method.name)


def word_matcher(clip):
    """has_word(text, word): the host tokenizer finds ``word`` in ``text`` as whole words."""
    return lambda text, word: bool(host.prompt_words(clip, text)[1].positions(word))


def load_extra_modules(paths) -> None:
    for i, path in enumerate(paths):
        load_module_file(f"nested_attention_training_extra_{i}_{os.path.basename(path).split('.')[0]}", path)


def open_session(config: TrainConfig, dist: Optional[DistContext] = None,
                 models: Optional[BaseModels] = None, method=None) -> TrainingSession:
    """``models``: frozen base models already loaded for the same --checkpoint and --clip-vision (tests
    and benchmarks reuse them; training never modifies them). ``method``: a training method
    (method.py), nested attention by default."""
    dist = dist or DistContext()
    method = method or NESTED_TRAINING
    if config.log_with == "tensorboard":  # before minutes of model loading
        require_tensorboard()
    load_extra_modules(config.extra_module)
    models = models or load_base_models(config)
    config = config.resolved(models.model_family)

    has_word = word_matcher(models.clip)
    data = scan_data_folder(config.data, lambda text, word: has_word(literal_text(text), word), config.words_path,
                            config.default_word, config.skip_unusable_images)
    weighted = [image for image in data.images if "(" in image.caption or ")" in image.caption]
    if weighted:
        log.info("%d caption(s) hold parentheses (e.g. %s: %r): captions are read literally, so ComfyUI's prompt "
                 "weighting such as (dog:1.2) does not apply in training; the parentheses and numbers are trained as "
                 "text (remove them from the captions if they are not meant as text)", len(weighted),
                 weighted[0].path.with_suffix(".txt").name, weighted[0].caption)
    describe_subjects(data, config.reference, config.augment_views)
    encoders = HostEncoders(models.clip, models.vae, models.clip_vision)
    checkpoint_id, clip_vision_id = file_identity(models.checkpoint), file_identity(models.clip_vision_path)
    cache = FeatureCache(config.cache_path, config.cache_memory_mb << 20)
    store = FeatureStore(encoders, cache, checkpoint_id, clip_vision_id, config.resolution)

    encoder, source = build_encoder(config, models)
    method.prepare(encoder)
    denoiser = Denoiser(models.patcher, method.rule, config.gradient_checkpointing)
    denoiser.load()
    encoder.to(denoiser.device)
    broadcast_module(encoder, dist)
    parameters = list(method.trainable(encoder))
    optimizer = make_optimizer(parameters, config)
    amp = autocast_dtype(config.precision, denoiser.device)
    identity = {"checkpoint": checkpoint_id, "clip_vision": clip_vision_id, "method": method.name,
                "encoder_config": encoder.config.to_json(), "layers": layers_to_json(encoder.layers)}
    log.info("base model %s (%s, %d cross-attention layers, %s), method %s, encoder %s (%s, %.1fM parameters, "
             "%.1fM trained), %d images of %d subjects, words %s", models.checkpoint.name, models.family,
             len(models.layers), denoiser.kind, method.name, source, json.loads(encoder.config.to_json()),
             sum(p.numel() for p in encoder.parameters()) / 1e6, sum(p.numel() for p in parameters) / 1e6,
             len(data), len(data.subjects), data.words())
    return TrainingSession(config, dist, models, data, encoders, store, encoder, source, method, parameters,
                           denoiser, optimizer, make_scheduler(optimizer, config),
                           make_grad_scaler(amp, denoiser.device), amp,
                           DataOrder(len(data), config.batch_size, dist, config.seed), identity)
