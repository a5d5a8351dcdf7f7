"""Every knob of the trainer: one frozen dataclass, one flag per field, with its default and help.

``TrainConfig`` is built from the command line by ``parse_args`` (the flags are generated from the
fields, so ``--help`` documents every one) or directly in code and tests. Values that depend on the
base model (resolution, output name) stay ``None`` here and are resolved once the model is loaded
(``resolved``). Validation names the flag and the fix.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Optional

from .errors import TrainingConfigError

log = logging.getLogger(__name__)

GROUPS = ("required", "host", "encoder", "data", "training", "cache", "output", "samples")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
REFERENCES = ("other", "self")
OPTIMIZERS = ("adamw", "adafactor")
LOG_WITH = ("none", "tensorboard")


def flag(default=MISSING, *, help: str, group: str, choices=None, metavar=None, repeat: bool = False):
    """A config field with its command-line help (the flag is ``--field-name``)."""
    metadata = {"help": help, "group": group, "choices": choices, "metavar": metavar, "repeat": repeat}
    if repeat:
        return field(default=(), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainConfig:
    # ---- required
    checkpoint: str = flag(help="Base model: a ComfyUI single-file SD1.5 or SDXL checkpoint (.safetensors), a path "
                                "or a name in ComfyUI's models/checkpoints. Frozen; loaded with ComfyUI's own loader.",
                           group="required", metavar="FILE")
    clip_vision: str = flag(help="CLIP vision model for the reference images (ViT-H, e.g. "
                                 "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors, for real use), a path or a name in "
                                 "models/clip_vision. Frozen.", group="required", metavar="FILE")
    data: str = flag(help="Data folder: one sub-folder per subject with images and .txt captions that contain the "
                          "subject's word (see README, 'Train your own weights').", group="required", metavar="DIR")
    output: str = flag(help="Output folder: weights, training states, sample grids, train_log.jsonl.",
                       group="required", metavar="DIR")
    # ---- host
    comfyui: Optional[str] = flag(None, help="ComfyUI folder. Default: the ComfyUI this pack is installed in "
                                             "(ComfyUI/custom_nodes/<pack>), else $NESTED_ATTENTION_COMFYUI.",
                                  group="host", metavar="DIR")
    cpu: bool = flag(False, help="Train on the CPU even when CUDA is available (fp32; slow, for tests).", group="host")
    extra_module: tuple = flag(help="A Python file run after ComfyUI is imported and before any model is loaded, e.g. "
                                    "to register model types ComfyUI does not know by itself. Repeatable.",
                               group="host", metavar="FILE", repeat=True)
    # ---- encoder
    init: Optional[str] = flag(None, help="Warm start: our Nested Attention weights, or an IP-Adapter Plus file "
                                          "(.safetensors/.bin) of the same base family as --checkpoint. Its sizes "
                                          "override the --encoder-* flags.", group="encoder", metavar="FILE")
    num_tokens: Optional[int] = flag(None, help="Subject tokens per reference image (default 16).", group="encoder")
    encoder_width: Optional[int] = flag(None, help="Resampler width (default 768 for SD1.5, 1280 for SDXL).",
                                        group="encoder")
    encoder_depth: Optional[int] = flag(None, help="Resampler layers (default 4).", group="encoder")
    encoder_heads: Optional[int] = flag(None, help="Resampler attention heads (default 12 for SD1.5, 20 for SDXL).",
                                        group="encoder")
    encoder_dim_head: Optional[int] = flag(None, help="Resampler head width (default 64).", group="encoder")
    encoder_ff_mult: Optional[int] = flag(None, help="Resampler feed-forward expansion (default 4).", group="encoder")
    # ---- data
    resolution: Optional[int] = flag(None, help="Training image size in pixels, square (default 512 for SD1.5, "
                                                "1024 for SDXL); images are resized and center-cropped.", group="data")
    subject_words: Optional[str] = flag(None, help="JSON file {subject folder: word}. Default: <data>/subjects.json "
                                                   "when it exists.", group="data", metavar="FILE")
    default_word: Optional[str] = flag(None, help="Word of the subjects that subjects.json does not list, e.g. "
                                                  "'person'.", group="data")
    reference: str = flag("other", help="Reference image of a training image: 'other' = another image of the same "
                                        "subject when there is one, else an augmented crop of itself; 'self' = the "
                                        "training image itself (a reconstruction check).",
                          group="data", choices=REFERENCES)
    augment_views: int = flag(4, help="Augmented crops per image, for subjects with a single image.", group="data")
    reference_mask: float = flag(0.5, help="Share of the references whose background the subject's mask blanks (for "
                                           "images that have a mask); the others are seen whole, as users usually "
                                           "give them, so the encoder learns both (1 = always masked, 0 = never).",
                                 group="data")
    skip_unusable_images: bool = flag(False, help="Skip images whose caption is missing or lacks the subject's "
                                                  "word, and images under 16 pixels on the shorter side (default: "
                                                  "stop with an error naming the file).", group="data")
    background_loss_weight: float = flag(1.0, help="Loss weight outside the subject mask, for images that have "
                                                   "one (1 = masks only blank the reference background).",
                                         group="data")
    # ---- training
    max_steps: int = flag(2000, help="Optimizer steps to train for.", group="training")
    batch_size: int = flag(4, help="Images per process per micro-batch (global batch = batch size x processes x "
                                   "--grad-accum).", group="training")
    grad_accum: int = flag(1, help="Micro-batches accumulated per optimizer step.", group="training")
    optimizer: str = flag("adamw", help="adamw = torch's AdamW (two float32 moments per parameter: 8 bytes); "
                                        "adafactor = torch's Adafactor (factored second moments, no first moment: "
                                        "for SDXL's default encoder 3.4 GB less memory than AdamW; its step size is "
                                        "--lr times each tensor's RMS, so it takes a larger --lr, e.g. 1e-2).",
                          group="training", choices=OPTIMIZERS)
    lr: float = flag(1e-4, help="Peak learning rate of the optimizer.", group="training")
    weight_decay: float = flag(0.01, help="Weight decay (decoupled, as AdamW's).", group="training")
    warmup_steps: int = flag(100, help="Linear warm-up steps, then cosine decay to 0 at --max-steps.",
                             group="training")
    max_grad_norm: float = flag(1.0, help="Gradient clipping by global norm (0 = off).", group="training")
    precision: str = flag("auto", help="Mixed precision on CUDA (autocast, and the frozen UNet loaded in that dtype): "
                                       "auto = bf16 where supported, else fp16 (with gradient scaling). On the CPU "
                                       "fp32, or bf16 autocast when asked for with bf16.", group="training",
                          choices=PRECISIONS)
    gradient_checkpointing: bool = flag(False, help="Recompute the frozen UNet's block activations in the backward "
                                                    "pass instead of keeping them: much less memory at high "
                                                    "resolution, for about one more UNet forward per step.",
                                        group="training")
    seed: int = flag(0, help="Seed of data order, noise, timesteps, dropout and initialisation.", group="training")
    drop_text: float = flag(0.05, help="Probability that a caption is replaced by the bare subject word (text "
                                       "dropped, subject kept).", group="training")
    drop_subject: float = flag(0.05, help="Probability that the subject is left out (caption kept).",
                               group="training")
    drop_both: float = flag(0.05, help="Probability that the caption is empty and the subject left out.",
                            group="training")
    # ---- cache
    cache_dir: Optional[str] = flag(None, help="Feature cache (VAE latents, text conditioning, CLIP vision features), "
                                               "reused across runs and invalidated when an input changes. Default: "
                                               "<output>/feature_cache.", group="cache", metavar="DIR")
    cache_memory_mb: int = flag(1024, help="Cached features also kept in memory, up to this many MiB per process "
                                           "(0 = read them from the cache folder each time).", group="cache")
    cache: bool = flag(True, help="Keep features in the cache folder (--no-cache: compute every feature when it is "
                                  "needed and keep nothing).", group="cache")
    # ---- output
    name: Optional[str] = flag(None, help="Weights file name stem (default nested_attention_<family>).",
                               group="output")
    save_every: int = flag(500, help="Write weights and the training state every K steps (0 = only at the end).",
                           group="output")
    keep_states: int = flag(2, help="Training states kept on disk (the newest).", group="output")
    keep_weights: int = flag(0, help="Step weights (<name>-step<N>.safetensors, written every --save-every steps) "
                                     "kept on disk, the newest (0 = all; the final weights are always kept).",
                             group="output")
    resume: Optional[str] = flag(None, help="Continue a run: a state file, or 'latest' for the newest state in "
                                            "<output>/states.", group="output", metavar="FILE|latest")
    log_every: int = flag(10, help="Write a train_log.jsonl line every K steps.", group="output")
    validation_data: Optional[str] = flag(None, help="A folder of subjects the run does not train on (the --data "
                                                     "layout): every --validate-every steps the log gets the "
                                                     "reference gap, the loss with another subject's reference minus "
                                                     "the loss with the subject's own (does the encoder use it?).",
                                          group="output", metavar="DIR")
    validate_every: int = flag(500, help="Steps between two reference-gap measurements on --validation-data.",
                               group="output")
    log_with: str = flag("none", help="Also log to TensorBoard (tensorboard: loss, lr, grad norm, samples/s, the "
                                      "reference gap and the sample grids, in <output>/tensorboard; needs the "
                                      "tensorboard package). train_log.jsonl is always written.",
                         group="output", choices=LOG_WITH)
    progress_bar: bool = flag(True, help="Show a tqdm progress bar (--no-progress-bar to hide).", group="output")
    # ---- samples
    sample_every: int = flag(500, help="Sample a PNG grid every K steps (0 = never).", group="samples")
    sample_prompts: Optional[str] = flag(None, help="JSON list of {\"subject\": folder, \"prompt\": text} for the "
                                                    "grids. Default: the first caption of up to --sample-count "
                                                    "subjects.", group="samples", metavar="FILE")
    sample_count: int = flag(4, help="Rows of the default sample grid.", group="samples")
    sample_steps: int = flag(20, help="Sampler steps per sample.", group="samples")
    sample_cfg: float = flag(5.0, help="Classifier-free guidance scale of the samples.", group="samples")
    sample_sampler: str = flag("euler", help="ComfyUI sampler name for the samples.", group="samples")
    sample_scheduler: str = flag("normal", help="ComfyUI scheduler name for the samples.", group="samples")
    sample_seed: int = flag(0, help="Seed of the samples (the same for every grid).", group="samples")

    def __post_init__(self) -> None:
        for name in ("checkpoint", "clip_vision", "data", "output"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise TrainingConfigError(f"--{_flag(name)} is required: give a path")
        positive = ("augment_views", "max_steps", "batch_size", "grad_accum", "keep_states", "log_every",
                    "sample_count", "sample_steps", "validate_every")
        optional_positive = ("num_tokens", "encoder_width", "encoder_depth", "encoder_heads", "encoder_dim_head",
                             "encoder_ff_mult", "resolution")
        for name in positive + optional_positive:
            value = getattr(self, name)
            if value is None and name in optional_positive:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise TrainingConfigError(f"--{_flag(name)} must be a positive integer, got {value!r}")
        for name in ("save_every", "sample_every", "warmup_steps", "cache_memory_mb", "keep_weights"):
            if getattr(self, name) < 0:
                raise TrainingConfigError(f"--{_flag(name)} must be 0 or more, got {getattr(self, name)!r}")
        if self.resolution is not None and self.resolution % 8:
            raise TrainingConfigError(f"--resolution must be a multiple of 8 (the VAE's factor), got {self.resolution}")
        for f in fields(self):  # NaN passes every comparison below, and --lr inf trains to NaN weights
            value = getattr(self, f.name)
            if _value_type(f) is float and isinstance(value, (int, float)) and not math.isfinite(value):
                raise TrainingConfigError(f"--{_flag(f.name)} must be a finite number, got {value!r}")
        if not 0 <= self.reference_mask <= 1:
            raise TrainingConfigError(f"--reference-mask is a share in [0, 1], got {self.reference_mask!r}")
        for name in ("lr", "weight_decay", "max_grad_norm", "background_loss_weight", "sample_cfg"):
            if getattr(self, name) < 0:
                raise TrainingConfigError(f"--{_flag(name)} must be 0 or more, got {getattr(self, name)!r}")
        if self.lr == 0:
            raise TrainingConfigError("--lr must be above 0")
        drops = (self.drop_text, self.drop_subject, self.drop_both)
        if any(p < 0 or p > 1 for p in drops) or sum(drops) > 1:
            raise TrainingConfigError(
                f"--drop-text, --drop-subject and --drop-both are probabilities in [0, 1] with a sum of at most 1, "
                f"got {drops}")
        if self.reference not in REFERENCES:
            raise TrainingConfigError(f"--reference must be one of {REFERENCES}, got {self.reference!r}")
        for name, choices in (("precision", PRECISIONS), ("optimizer", OPTIMIZERS), ("log_with", LOG_WITH)):
            if getattr(self, name) not in choices:
                raise TrainingConfigError(f"--{_flag(name)} must be one of {choices}, got {getattr(self, name)!r}")
        object.__setattr__(self, "extra_module", tuple(self.extra_module))

    # ---- derived paths
    @property
    def output_dir(self) -> Path:
        return Path(self.output).expanduser()

    @property
    def states_dir(self) -> Path:
        return self.output_dir / "states"

    @property
    def samples_dir(self) -> Path:
        return self.output_dir / "samples"

    @property
    def log_path(self) -> Path:
        return self.output_dir / "train_log.jsonl"

    @property
    def tensorboard_dir(self) -> Path:
        return self.output_dir / "tensorboard"

    @property
    def cache_path(self) -> Optional[Path]:
        if not self.cache:
            return None
        return Path(self.cache_dir).expanduser() if self.cache_dir else self.output_dir / "feature_cache"

    @property
    def words_path(self) -> Optional[Path]:
        if self.subject_words:
            return Path(self.subject_words).expanduser()
        default = Path(self.data).expanduser() / "subjects.json"
        return default if default.is_file() else None

    def resolved(self, family) -> "TrainConfig":
        """Fill in what depends on the base family (a ``ModelFamily``): resolution and the weights name."""
        return replace(self, resolution=self.resolution or family.resolution,
                       name=self.name or f"nested_attention_{family.name}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# Old spellings of renamed fields: the flag still works (with a deprecation warning), and a training
# state that recorded the old name is read under the new one.
RENAMED_FIELDS = {"skip_bad_captions": "skip_unusable_images"}  # it also skipped images too small to train on


class _DeprecatedSpelling(argparse.BooleanOptionalAction):
    """``--old-flag`` / ``--no-old-flag``: sets the renamed field, and says so once in the log."""

    def __call__(self, parser, namespace, values, option_string=None):
        new = "--" + _flag(self.dest)
        log.warning("%s is deprecated: it is spelled %s now (same meaning: images with a bad caption and images "
                    "too small to train on are skipped)", option_string, new)
        super().__call__(parser, namespace, values, option_string)


# Fields that change the trained function itself; a resumed run must agree on them.
STRUCTURAL_FIELDS = ("num_tokens", "encoder_width", "encoder_depth", "encoder_heads", "encoder_dim_head",
                     "encoder_ff_mult", "resolution", "batch_size", "grad_accum", "seed", "reference", "optimizer")
# Fields that only say where things go or how they are reported: never compared on resume.
REPORTING_FIELDS = ("output", "comfyui", "cpu", "extra_module", "cache_dir", "cache_memory_mb", "cache", "resume",
                    "log_every", "log_with", "validation_data", "validate_every", "progress_bar", "save_every",
                    "keep_states", "keep_weights", "sample_every", "sample_prompts", "sample_count",
                    "sample_steps", "sample_cfg", "sample_sampler", "sample_scheduler", "sample_seed", "name")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def build_parser(prog: str = "nested-attention-train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train Nested Attention weights (a subject encoder and nested key/value projections) on a "
                    "frozen ComfyUI checkpoint; the output loads with the 'Nested Attention Loader' node. Several "
                    "GPUs: torchrun --nproc_per_node N -m nested_attention.training ...",
        epilog="Stopping a run: Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes the weights and the "
               "training state, and stops (exit code 128 + the signal's number: 143 for SIGTERM, 130 for Ctrl-C); "
               "continue with --resume latest. Saving can take a while on a large model: a second Ctrl-C exits at "
               "once without saving (the run then continues from the last state written by --save-every). One --output holds one run at a time (a lock file, "
               "<output>/.train.lock): a second run into it stops at once, naming the PID that holds it.")
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in fields(TrainConfig):
        meta, option = f.metadata, f"--{_flag(f.name)}"
        group = groups[meta["group"]]
        if f.default is MISSING and not meta["repeat"]:
            group.add_argument(option, dest=f.name, required=True, help=meta["help"], metavar=meta["metavar"])
        elif meta["repeat"]:
            group.add_argument(option, dest=f.name, action="append", default=[], help=meta["help"],
                               metavar=meta["metavar"])
        elif f.type in ("bool", bool):
            group.add_argument(option, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                               help=f"{meta['help']} Default: {'on' if f.default else 'off'}.")
        else:
            kind = _value_type(f)
            shown = f" Default: {f.default}." if f.default is not None and "(default" not in meta["help"] else ""
            metavar = meta["metavar"] or (None if meta["choices"] else {int: "N", float: "X", str: "TEXT"}[kind])
            group.add_argument(option, dest=f.name, type=kind, default=f.default, help=meta["help"] + shown,
                               choices=meta["choices"], metavar=metavar)
    for old_name, name in RENAMED_FIELDS.items():
        groups[next(f for f in fields(TrainConfig) if f.name == name).metadata["group"]].add_argument(
            f"--{_flag(old_name)}", dest=name, action=_DeprecatedSpelling, default=argparse.SUPPRESS,
            help=f"Deprecated spelling of --{_flag(name)}.")
    return parser


def _value_type(f):
    text = str(f.type)
    for name, kind in (("int", int), ("float", float)):
        if text in (name, f"Optional[{name}]"):
            return kind
    return str


def parse_args(argv=None, prog: str = "nested-attention-train") -> TrainConfig:
    """The command line's config; a bad value ends as argparse's own do: usage, the message, exit 2."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return TrainConfig(**vars(args))
    except TrainingConfigError as err:
        parser.error(str(err))


def config_from_argv(argv: list[str]) -> TrainConfig:
    """For tests and tools: the same as the command line, raising instead of exiting."""
    parser = build_parser()
    parser.exit_on_error = False
    try:
        args = parser.parse_args(argv)
    except argparse.ArgumentError as err:
        raise TrainingConfigError(str(err)) from None
    return TrainConfig(**vars(args))
