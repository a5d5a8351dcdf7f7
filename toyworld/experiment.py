"""The toy-world experiment, stage by stage: data, scorers, VAE, toy CLIP, base model, encoders, evaluation.

    python toyworld/cli.py experiment OUT_DIR            # everything (preset "full", <= 150 min, 2 cores)
    python toyworld/cli.py experiment OUT_DIR --preset smoke   # the same pipeline at tiny size

Each stage writes into its own folder of OUT_DIR and a ``<stage>.done.json`` stamp with its
config and wall time; a stage whose stamp matches the current config is skipped, so an interrupted
run continues where it stopped. Every stage shows a progress bar. ``REQUIRES`` says what each stage
builds on: independent stages (scorers, vae, clip) may run at the same time in separate processes.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from .base_pipeline import BaseConfig, build_base, build_vae
from .clip_training import ClipTrainConfig
from .description import described_caption
from .evaluation import EvalConfig
from .generation import SamplerSettings
from .progress import tqdm_bar
from .oracle import OracleConfig, train_oracles
from .publish import METHODS, publish, publish_oracles, run_evaluation
from .dataset import MANIFEST_FILE, MASK_FOLDER, write_training_folder
from .errors import ExperimentError
from .family import TOY_FAMILY
from .grounding import SUBJECT_REGIONS, GroundedImages, grounded_phrases
from .identity import DOMAINS, heldout_ids, sample_identity, train_ids
from .render import render_two
from .rng import key_seed
from .scene import caption_two, sample_scene
from .scorer_pipeline import ScorerPipelineConfig, train_scorers
from .scorer_training import FitConfig
from .unet_training import UNetTrainConfig
from .vae_training import VaeTrainConfig

log = logging.getLogger(__name__)

STAGES = ("data", "scorers", "vae", "clip", "base", "encoders", "publish", "oracles", "evaluate")
REQUIRES = {"data": (), "scorers": (), "vae": ("data",), "clip": ("data",), "base": ("vae", "clip"),
            "encoders": ("base",), "publish": ("scorers", "encoders"), "oracles": ("publish",),
            "evaluate": ("oracles",)}


def prerequisites(stage: str) -> list[str]:
    """Every stage ``stage`` builds on, directly or not, in ``STAGES`` order (independent stages, e.g.
    scorers and vae, may run at the same time in two processes)."""
    needed, todo = set(), list(REQUIRES[stage])
    while todo:
        s = todo.pop()
        if s not in needed:
            needed.add(s)
            todo.extend(REQUIRES[s])
    return [s for s in STAGES if s in needed]


@dataclass(frozen=True)
class DataConfig:
    ids_per_domain: int = 1800  # training identities 0..n-1 of each domain
    renders_per_identity: int = 5
    pairs: int = 6000  # two-subject images (a person and a dog) for the base model
    seed: int = 0


@dataclass(frozen=True)
class EncoderStageConfig:
    """The one budget every method trains with (the trainer's flags of the same names)."""
    steps: int = 2000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 100
    background_loss_weight: float = 0.25  # the loss outside the subject's mask (identity is inside it)
    reference_mask: float = 0.5  # references masked, the rest whole (evaluation and users: whole)
    validate_every: int = 250  # the reference gap on held-out ids (training/validation.py), logged
    validation_ids: int = 16  # per domain, held-out ids 1900..
    num_tokens: int = TOY_FAMILY.encoder.num_tokens  # the encoder: the toy family's (family.py)
    width: int = TOY_FAMILY.encoder.width
    depth: int = TOY_FAMILY.encoder.depth
    heads: int = TOY_FAMILY.encoder.heads
    dim_head: int = TOY_FAMILY.encoder.dim_head
    ff_mult: int = TOY_FAMILY.encoder.ff_mult
    seed: int = 0


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    scorers: ScorerPipelineConfig = field(default_factory=ScorerPipelineConfig)
    vae: VaeTrainConfig = field(default_factory=VaeTrainConfig)
    clip: ClipTrainConfig = field(default_factory=ClipTrainConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    encoders: EncoderStageConfig = field(default_factory=EncoderStageConfig)
    oracles: OracleConfig = field(default_factory=OracleConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)


PRESETS = {
    "full": ExperimentConfig(),
    "smoke": ExperimentConfig(
        data=DataConfig(ids_per_domain=12, renders_per_identity=3, pairs=16),
        scorers=ScorerPipelineConfig(train_ids_per_domain=12, renders_per_identity=2, eval_ids_per_domain=4,
                                     eval_renders_per_identity=2, identity_fit=FitConfig(epochs=1),
                                     scene_fit=FitConfig(epochs=1)),
        vae=VaeTrainConfig(steps=3, batch=4),
        clip=ClipTrainConfig(steps=2, batch=8, warmup=1, same_scene=1),
        base=BaseConfig(unet=UNetTrainConfig(steps=3, batch=4, warmup=1, grounding_from=1, look_gap_every=2)),
        encoders=EncoderStageConfig(steps=2, batch=4, warmup=1, validation_ids=2, num_tokens=2, width=32, depth=1,
                                    heads=2, dim_head=16),
        oracles=OracleConfig(renders=2, steps=2, batch=1, ids_per_domain=1, heldout_renders=1, heldout_draws=1),
        evaluation=EvalConfig(ids_per_domain=1, gallery=2, pairs=1, prompts=2, sweep_ids_per_domain=1,
                              sweep_prompts=1, sampler=SamplerSettings(steps=2))),
}


class Stages:
    """Stamps of finished stages under the output folder."""

    def __init__(self, out_dir: Path, config: ExperimentConfig):
        self.out_dir, self.config = out_dir, config

    def stamp(self, stage: str) -> Path:
        return self.out_dir / f"{stage}.done.json"

    def config_of(self, stage: str) -> dict:
        parts = {"data": ["data"], "scorers": ["scorers"], "vae": ["data", "vae"], "clip": ["data", "clip"],
                 "base": ["data", "vae", "clip", "base"],
                 "encoders": ["data", "vae", "clip", "base", "encoders"],
                 "publish": ["data", "scorers", "vae", "clip", "base", "encoders"],
                 "oracles": ["data", "scorers", "vae", "clip", "base", "encoders", "oracles"]
                 }.get(stage, list(asdict(self.config)))  # evaluate: everything
        return {part: asdict(getattr(self.config, part)) for part in parts}

    def done(self, stage: str) -> bool:
        try:
            return json.loads(self.stamp(stage).read_text())["config"] == json.loads(json.dumps(self.config_of(stage)))
        except (OSError, ValueError, KeyError):
            return False

    def finish(self, stage: str, seconds: float, **extra) -> None:
        self.stamp(stage).write_text(json.dumps({"config": self.config_of(stage), "seconds": round(seconds, 1),
                                                 **extra}, indent=1) + "\n")


def pair_samples(count: int, seed: int, ids) -> list[dict]:
    """Two-subject renders: a random person and dog of ``ids``, a random scene and side."""
    out = []
    ids = list(ids)
    for n in range(count):
        key = ("toyworld-pair", seed, n)
        person_id, pet_id = ids[key_seed(*key, "person") % len(ids)], ids[key_seed(*key, "pet") % len(ids)]
        side = "left" if key_seed(*key, "side") % 2 == 0 else "right"
        out.append({"person": person_id, "pet": pet_id, "scene": sample_scene(*key), "side": side,
                    "seed": key_seed(*key, "variation") & 0x7FFFFFFF})
    return out


def render_pairs(pairs: list[dict], progress=None) -> dict[str, np.ndarray]:
    """The two-subject renders of ``pairs`` (``pair_samples``) as pairs.npz holds them: ``images`` uint8
    [n, 64, 64, 3], ``captions``, each subject's visible mask ``person_masks`` / ``pet_masks`` uint8
    [n, 64, 64] (255 = subject; the grounding loss's regions), and the caption's source: ``scenes``
    (JSON of each ``Scene``) and ``sides`` (the person's)."""
    images, captions = np.empty((len(pairs), 64, 64, 3), np.uint8), []
    person_masks, pet_masks = np.empty((len(pairs), 64, 64), np.uint8), np.empty((len(pairs), 64, 64), np.uint8)
    for i, p in enumerate(pairs):
        rendered = render_two(sample_identity("person", p["person"]), sample_identity("pet", p["pet"]), p["scene"],
                              p["seed"], 64, person_side=p["side"])
        images[i] = np.asarray(rendered.image)
        person_masks[i], pet_masks[i] = np.asarray(rendered.person_mask), np.asarray(rendered.pet_mask)
        captions.append(caption_two(p["scene"], p["side"]))
        if progress is not None:
            progress(1)
    return {"images": images, "captions": np.array(captions), "person_masks": person_masks, "pet_masks": pet_masks,
            "scenes": np.array([json.dumps(asdict(p["scene"]), sort_keys=True) for p in pairs]),
            "sides": np.array([p["side"] for p in pairs])}


def run_data(out_dir: Path, config: DataConfig) -> None:
    folder = out_dir / "data" / "train"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)  # a stale, unfinished folder (the stage stamp is missing)
    ids = train_ids()[:config.ids_per_domain]
    singles = len(DOMAINS) * len(ids) * config.renders_per_identity
    with tqdm_bar(singles + config.pairs, "data: renders") as bar:
        write_training_folder(folder, DOMAINS, ids, config.renders_per_identity, config.seed, progress=bar.update)
        pairs = render_pairs(pair_samples(config.pairs, config.seed, ids), bar.update)
    np.savez(out_dir / "data" / "pairs.npz", **pairs)


def single_subject_images(out_dir: Path) -> tuple[np.ndarray, list[dict]]:
    """Every image of the training folder, with its manifest entry (domain, identity id, scene)."""
    folder = out_dir / "data" / "train"
    manifest = json.loads((folder / MANIFEST_FILE).read_text())["images"]
    images = np.stack([np.asarray(Image.open(folder / item["file"]).convert("RGB")) for item in manifest])
    return images, manifest


def single_subject_masks(out_dir: Path, manifest: list[dict]) -> np.ndarray:
    """uint8 [N, 64, 64] subject mask of every image of the training folder (its ``masks/`` files)."""
    folder = out_dir / "data" / "train"
    paths = [folder / Path(item["file"]).parent / MASK_FOLDER / Path(item["file"]).name for item in manifest]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ExperimentError(f"{len(missing)} training images have no mask (first: {missing[0]}): the data stage "
                              "writes them; delete data.done.json and run the data stage again")
    return np.stack([np.asarray(Image.open(p).convert("L")) for p in paths])


def base_grounding(out_dir: Path, manifest: list[dict], pairs) -> GroundedImages:
    """Every base image's grounded phrases and subject masks (``grounding.py``), the training folder's
    images first, then the pairs (the order of ``run_base``'s images)."""
    from .scene import Scene

    phrases = [grounded_phrases((item["domain"],), _scene(item)) for item in manifest]
    phrases += [grounded_phrases(DOMAINS, Scene(**json.loads(str(s)))) for s in _pairs_field(out_dir, pairs, "scenes")]
    return GroundedImages(phrases, base_masks(out_dir, manifest, pairs))


def base_masks(out_dir: Path, manifest: list[dict], pairs) -> np.ndarray:
    """uint8 [N, 3, 64, 64] subject masks of every base image in ``SUBJECT_REGIONS`` order (zeros where an
    image has no such subject): the training folder's images first, then the pairs."""
    singles = single_subject_masks(out_dir, manifest)
    person, pet = (_pairs_field(out_dir, pairs, key) for key in ("person_masks", "pet_masks"))
    n, m = len(singles), len(person)
    masks = np.zeros((n + m, len(SUBJECT_REGIONS), 64, 64), np.uint8)
    masks[:n, SUBJECT_REGIONS.index("subject")] = singles
    masks[n:, SUBJECT_REGIONS.index("person")] = person
    masks[n:, SUBJECT_REGIONS.index("pet")] = pet
    return masks


def _pairs_field(out_dir: Path, pairs, key: str) -> np.ndarray:
    if key not in pairs:
        raise ExperimentError(f"pairs.npz has no {key!r} (written by an older data stage): delete "
                              f"{out_dir / 'data.done.json'} and run the data stage again")
    return pairs[key]


def _scene(item: dict):
    from .scene import Scene

    return Scene(**item["scene"])


def described_captions(manifest: list[dict], look: bool = True) -> list[str]:
    """Each image's attribute caption; ``look=False``: without the look its scene names (the toy CLIP's)."""
    return [described_caption(sample_identity(item["domain"], item["identity_id"]),
                              _scene(item) if look else _scene(item).without_look()) for item in manifest]


def base_captions(manifest: list[dict], described_share: float, seed: int) -> list[str]:
    """The base's captions: the attributes named for a seeded ``described_share`` of the images, the
    class word alone for the rest (what the training folder's own captions say)."""
    from .scene import caption

    described = described_captions(manifest)
    return [described[n] if (key_seed("toyworld-described", seed, item["file"]) % 10_000) < described_share * 10_000
            else caption(item["domain"], _scene(item)) for n, item in enumerate(manifest)]


def heldout_check_images() -> np.ndarray:
    from .dataset import make_samples, render_array

    return render_array(make_samples(DOMAINS, heldout_ids()[:64], 2, 7))


def run_vae(out_dir: Path, config: ExperimentConfig) -> dict:
    images, manifest = single_subject_images(out_dir)
    pairs = np.load(out_dir / "data" / "pairs.npz")
    subjects = base_masks(out_dir, manifest, pairs).max(axis=1) > 127
    return build_vae(np.concatenate([images, pairs["images"]]), out_dir / "vae", config.vae, tqdm_bar,
                     heldout_images=heldout_check_images(), subjects=subjects)


def run_clip(out_dir: Path, config: ExperimentConfig, preset: str) -> dict:
    from .base_pipeline import world_captions
    from .clip_training import build_clip
    from .comfy_runtime import load_host

    load_host()
    images, manifest = single_subject_images(out_dir)
    sizes = {"probe_train_ids": 8, "retrieval_ids": 4} if preset == "smoke" else None
    # The look (hat, shirt, pose ...) is not grouped on (a batch's same-scene pools of the four scene
    # factors would fall apart) and is named only in the second term (look_term): named in the only term,
    # it made the contrastive task easy without the identity's attributes (loss 4.37 -> 0.004, held-out
    # identity retrieval 3 % vs the second edition's 9 %).
    scenes = [_scene(item).without_look() for item in manifest]
    return build_clip(images, described_captions(manifest, look=False), scenes, world_captions(), out_dir / "clip",
                      config.clip, tqdm_bar, report_sizes=sizes,
                      look_captions=described_captions(manifest) if config.clip.look_term else None)


def run_base(out_dir: Path, config: ExperimentConfig) -> dict:
    images, manifest = single_subject_images(out_dir)
    pairs = np.load(out_dir / "data" / "pairs.npz")
    captions = base_captions(manifest, config.base.described_share, config.base.seed)
    grounded = base_grounding(out_dir, manifest, pairs) if config.base.unet.grounding_weight > 0 else None
    report = build_base(np.concatenate([images, pairs["images"]]), captions + [str(c) for c in pairs["captions"]],
                        out_dir / "base", config.base, out_dir / "vae", out_dir / "clip", tqdm_bar, grounded)
    from .attention_share import attention_share  # is the subject word's attention on the subject?

    share = attention_share(Path(report["files"]["checkpoint"]))
    (out_dir / "base" / "attention_share.json").write_text(json.dumps(share, indent=1) + "\n")
    return {**report, "attention_share_mean": share["mean"]}


def run(out_dir, preset: str = "full", stages=STAGES) -> None:
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = PRESETS[preset]
    book = Stages(out_dir, config)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for stage in stages:
        missing = [s for s in prerequisites(stage) if s not in stages and not book.done(s)]
        if missing:
            raise ExperimentError(f"stage {stage} needs stage(s) {', '.join(missing)} of the same config first, "
                                  f"and {out_dir} has none: add them to --stages, or leave --stages out")
        if book.done(stage):
            log.info("stage %s: done before, skipped (%s)", stage, book.stamp(stage))
            continue
        started = time.perf_counter()
        if stage == "data":
            run_data(out_dir, config.data)
            extra = {}
        elif stage == "scorers":
            scorers = replace(config.scorers, threads=torch.get_num_threads())
            extra = {"report": _scorer_summary(train_scorers(out_dir / "scorers", scorers, tqdm_bar))}
        elif stage == "vae":
            extra = {"report": run_vae(out_dir, config)}
        elif stage == "clip":
            extra = {"report": run_clip(out_dir, config, preset)}
        elif stage == "base":
            extra = {"report": run_base(out_dir, config)}
        elif stage == "encoders":
            run_encoders(out_dir, config.encoders)
            extra = {}
        elif stage == "publish":
            extra = {"files": publish(out_dir, out_dir / "weights")}
        elif stage == "oracles":
            extra = {"report": train_oracles(out_dir / "weights", out_dir / "oracles", config.oracles, tqdm_bar)}
            publish_oracles(out_dir / "oracles", out_dir / "weights")
        else:
            extra = {"scores": run_evaluation(out_dir / "weights", out_dir / "results", config.evaluation, tqdm_bar)}
        book.finish(stage, time.perf_counter() - started, **extra)
        log.info("stage %s: %.0f s", stage, time.perf_counter() - started)


def _scorer_summary(report: dict) -> dict:
    return {k: report[k] for k in ("identity", "scene") if k in report}


def validation_folder(folder: Path, config: EncoderStageConfig) -> Path:
    """Held-out subjects for the reference gap logged during training (``training/validation.py``):
    held-out ids from 1900 on, which the evaluation (1800.. and, for the dogs of pairs, 1999 down) never uses."""
    if not (folder / MANIFEST_FILE).is_file():
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        ids = list(heldout_ids())[100:100 + config.validation_ids]
        write_training_folder(folder, DOMAINS, ids, 2, seed=config.seed + 101, allow_heldout=True)
    return folder


def run_encoders(out_dir: Path, config: EncoderStageConfig) -> None:
    """Train ours and the two baselines with the repository's trainer, one budget, one frozen base."""
    from .comfy_runtime import load_host

    load_host()
    from ..training.base_models import load_base_models
    from ..training.config import TrainConfig
    from ..training.loop import train
    from ..training.method import method_named
    from ..training.session import open_session

    models_dir = out_dir / "base" / "models"
    common = TrainConfig(
        checkpoint=str(models_dir / "checkpoints" / "toyworld_base.safetensors"),
        clip_vision=str(models_dir / "clip_vision" / "toyworld_clip_vision.safetensors"),
        data=str(out_dir / "data" / "train"), output=str(out_dir / "encoders"), cpu=True, resolution=64,
        num_tokens=config.num_tokens, encoder_width=config.width, encoder_depth=config.depth,
        encoder_heads=config.heads, encoder_dim_head=config.dim_head, encoder_ff_mult=config.ff_mult,
        max_steps=config.steps, batch_size=config.batch, lr=config.lr, warmup_steps=config.warmup,
        background_loss_weight=config.background_loss_weight, reference_mask=config.reference_mask,
        precision="fp32", seed=config.seed, save_every=0, sample_every=0, log_every=50,
        cache_dir=str(out_dir / "encoders" / "feature_cache"),
        validation_data=str(validation_folder(out_dir / "encoders" / "validation", config)),
        validate_every=config.validate_every)
    models = load_base_models(common)
    for method in METHODS.values():
        key = method.file_key
        log.info("encoders: training %s", key)
        session = open_session(replace(common, output=str(out_dir / "encoders" / key), name=f"toyworld_{key}"),
                               models=models, method=method_named(method.name))
        train(session)
