"""The experiment's deliverables: fp16 weights in a ComfyUI ``models/`` layout, and their evaluation.

``publish(out_dir, weights_dir)`` writes what gets committed (``toyworld/weights/`` in the repository):

    models/checkpoints/toyworld_base.safetensors          the toy base (UNet + text encoder + VAE)
    models/clip_vision/toyworld_clip_vision.safetensors    its CLIP vision tower
    models/nested_attention/toyworld_nested_attention.safetensors   ours (the demo's default)
    benchmark/toyworld_single_token.safetensors           the baselines (same encoder format)
    benchmark/toyworld_decoupled.safetensors
    scorers/identity.safetensors, scorers/scene.safetensors
    manifest.json                                          sizes and sha256 of every file

and, when per-identity oracles were fitted (``oracle.py``),
``benchmark/oracles/<method key>/<domain>_<id>.safetensors`` (``ORACLE_DIR``).

``run_evaluation(weights_dir, results_dir)`` measures those files (``evaluation.py``) and writes
``results.json`` (format ``RESULTS_FORMAT``), ``results.md``, ``grid.png`` and ``tradeoff.png``. The
evaluation reads only the published files, so re-running it on the committed weights reproduces
the committed table.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open

import numpy as np

from ..nested_attention_core.methods import DECOUPLED, NESTED, SINGLE_TOKEN
from .evaluation import IP_ADAPTER_ROW, TWO_SUBJECT_SCENES, EvalConfig, evaluate, evaluation_size, method_row
from .evaluation_inputs import reference as evaluation_reference, reference_render
from .errors import ExperimentError
from .identity import PERSON, PET
from .progress import progress_bar

log = logging.getLogger(__name__)




def encoder_file(method) -> str:
    """Where the published weights of a method lie: ours where ComfyUI looks for them, the baselines apart."""
    folder = "models/nested_attention" if method == NESTED else "benchmark"
    return f"{folder}/toyworld_{method.file_key}.safetensors"


METHODS = {method_row(m): m for m in (NESTED, SINGLE_TOKEN, DECOUPLED)}  # the methods compared, by row; ours first
BASE_FILES = {"checkpoint": "models/checkpoints/toyworld_base.safetensors",
              "clip_vision": "models/clip_vision/toyworld_clip_vision.safetensors"}
ENCODER_FILES = {m.file_key: encoder_file(m) for m in METHODS.values()}
SCORER_FILES = {"identity": "scorers/identity.safetensors", "scene": "scorers/scene.safetensors"}
REPO_ROOT = Path(__file__).resolve().parents[1]
COMMITTED_WEIGHTS = REPO_ROOT / "toyworld" / "weights"
COMMITTED_RESULTS = REPO_ROOT / "docs" / "toyworld"
ORACLE_DIR = "benchmark/oracles"  # per-identity oracle subjects: <method file key>/<domain>_<id>.safetensors
RESULT_FILES = ("results.json", "results.md", "grid.png", "tradeoff.png")
RESULTS_FORMAT = 4  # results.json structure: 2 = rows with ceilings, masked references, attributes, sweep;
# 3 = + the IP-Adapter file's row and curve, paired differences, two subjects without regions and leakage, demo;
# 4 = prompt alignment as the share of the named factors right (prompt "share", "subject"; prompt_se, subject_se,
# paired differences and the trade-off on the shares), "all" kept


def _fp16_copy(source: Path, target: Path) -> None:
    from ..nested_attention_core.weights import write_safetensors

    with safe_open(str(source), framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(target, tensors, metadata)


def publish(out_dir, weights_dir) -> dict:
    out_dir, weights_dir = Path(out_dir), Path(weights_dir)
    sources = {BASE_FILES["checkpoint"]: out_dir / "base" / "models" / "checkpoints" / "toyworld_base.safetensors",
               BASE_FILES["clip_vision"]: out_dir / "base" / "models" / "clip_vision" / "toyworld_clip_vision.safetensors",
               SCORER_FILES["identity"]: out_dir / "scorers" / "identity.safetensors",
               SCORER_FILES["scene"]: out_dir / "scorers" / "scene.safetensors"}
    for key, rel in ENCODER_FILES.items():
        sources[rel] = out_dir / "encoders" / key / f"toyworld_{key}.safetensors"
    manifest = add_published(weights_dir, sources, {})
    report = out_dir / "scorers" / "scorer_report.json"
    if report.is_file():
        shutil.copyfile(report, weights_dir / "scorers" / "scorer_report.json")
    return manifest


def add_published(weights_dir: Path, sources: dict, manifest: dict | None = None) -> dict:
    """fp16 copies of ``sources`` ({relative path: file}) in ``weights_dir``, entered in its manifest.json
    (``manifest`` None: the folder's current one)."""
    if manifest is None:
        manifest = json.loads((weights_dir / "manifest.json").read_text())
    for rel, source in sources.items():
        _fp16_copy(source, weights_dir / rel)
        data = (weights_dir / rel).read_bytes()
        manifest[rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (weights_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def publish_oracles(oracle_dir: Path, weights_dir: Path) -> dict:
    """The oracle subjects ``oracle.train_oracles`` wrote, published under ``ORACLE_DIR``."""
    sources = {f"{ORACLE_DIR}/{path.parent.name}/{path.name}": path
               for path in sorted(Path(oracle_dir).glob("*/*.safetensors"))}
    return add_published(Path(weights_dir), sources)


def load_methods(weights_dir: Path) -> dict:
    """{row: (training method, encoder)} of the published weights, each file refused unless it holds its method."""
    from ..nested_attention_core.weights import load_weights
    from ..training.method import method_named

    return {name: (method_named(method.name),
                   load_weights(weights_dir / encoder_file(method), accept=[method.name]).encoder.float().eval())
            for name, method in METHODS.items()}


def with_ip_adapter_row(methods: dict, folder) -> dict:
    """``methods`` and the row ``IP_ADAPTER_ROW``: the decoupled encoder written as an IP-Adapter Plus file
    in ``folder`` and read back by the Loader's function (``ipadapter_file.py``), applied as ours is."""
    from ..nested_attention_core.errors import WeightsFormatError
    from ..training.method import NESTED_TRAINING
    from .ipadapter_file import through_ip_adapter_file

    try:
        loaded = through_ip_adapter_file(methods[method_row(DECOUPLED)][1], folder)
    except WeightsFormatError as err:  # e.g. the smoke preset's 2 x 16 heads: IP-Adapter's resampler splits by 64
        log.warning("the decoupled encoder cannot be read as an IP-Adapter Plus file (%s): the evaluation leaves out "
                    "the row %r", err, IP_ADAPTER_ROW)
        return methods
    return {**methods, IP_ADAPTER_ROW: (NESTED_TRAINING, loaded.encoder.float().eval())}


def load_oracle_subjects(weights_dir: Path) -> dict:
    """{(method name, domain, id): NestedSubject} of the published oracles (``ORACLE_DIR``); {} with a
    logged notice when the folder is absent (the oracle rows are then left out of the table)."""
    folder = weights_dir / ORACLE_DIR
    if not folder.is_dir():
        log.warning("no oracle subjects in %s: the evaluation leaves out the per-identity oracle rows (train them "
                    "with toyworld/oracle.py and publish them there to include them)", folder)
        return {}
    from .oracle import load_oracles

    names = {method.file_key: name for name, method in METHODS.items()}
    return {(names[key], domain, identity_id): subject
            for (key, domain, identity_id), subject in load_oracles(folder).items()}


def _evaluated(weights_dir: Path):
    """(ToyHost, methods with the IP-Adapter file's row, oracle subjects) of a weights folder."""
    from .generation import ToyHost

    host = ToyHost.load(weights_dir / BASE_FILES["checkpoint"], weights_dir / BASE_FILES["clip_vision"])
    with tempfile.TemporaryDirectory() as folder:
        methods = with_ip_adapter_row(load_methods(weights_dir), folder)
    return host, methods, load_oracle_subjects(weights_dir)


def domain_images(weights_dir: str, config: EvalConfig, domain: str) -> tuple[dict, dict]:
    """``evaluation.collect_domain`` of one domain, on one thread, from the files of ``weights_dir`` (what
    ``run_evaluation``'s second process runs)."""
    from .comfy_runtime import load_host
    from .evaluation import collect_domain

    load_host()
    torch.set_num_threads(1)
    host, methods, oracles = _evaluated(Path(weights_dir))
    return collect_domain(host, methods, oracles, config, domain)


def run_evaluation(weights_dir, results_dir, config: EvalConfig, bar=None, processes: int = 2) -> dict:
    """Evaluate published weights; write ``RESULT_FILES`` into ``results_dir``; return the scores.

    ``processes`` 2: the dogs' identities are sampled in a second process (spawned, one thread, reading
    the same files) while this one samples the persons', the two-subject images and the demo: every
    KSampler call runs on one thread either way (0.59 s on one thread, 0.76 s on two, measured on 2
    cores), so the two cores share the calls and the images and scores are the same as with 1."""
    from concurrent.futures import ProcessPoolExecutor
    from contextlib import nullcontext
    from multiprocessing import get_context

    from .report import grid_image, markdown_report
    from .scoring import load_scorer
    from .tradeoff import tradeoff_plot

    if processes not in (1, 2):
        raise ExperimentError(f"processes is {processes!r}; give 1 (everything here) or 2 (the dogs' identities in a "
                              "second process)")
    weights_dir, results_dir = Path(weights_dir), Path(results_dir)
    for rel in (*BASE_FILES.values(), *ENCODER_FILES.values(), *SCORER_FILES.values()):
        if not (weights_dir / rel).is_file():
            raise ExperimentError(f"weights folder {weights_dir} has no {rel}: give the folder the experiment's "
                                  "publish stage wrote (OUT_DIR/weights), or restore the committed ones with "
                                  "`git checkout -- toyworld/weights`")
    host, methods, oracles = _evaluated(weights_dir)
    identity_net = load_scorer(weights_dir / SCORER_FILES["identity"]).float()
    scene_net = load_scorer(weights_dir / SCORER_FILES["scene"]).float()
    calls = evaluation_size(config, methods, oracles)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pool = ProcessPoolExecutor(1, mp_context=get_context("spawn")) if processes == 2 else nullcontext()
        with progress_bar(bar, calls, "evaluate") as progress, pool:
            elsewhere = {PET: pool.submit(domain_images, str(weights_dir), config, PET)} if processes == 2 else {}
            result = evaluate(host, methods, identity_net, scene_net, config, oracles, progress, elsewhere)
    finally:
        torch.set_num_threads(threads)
    scores = {k: result[k] for k in ("single", "paired", "sweep", "two", "demo")}
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "results.json").write_text(json.dumps(
        {"format": RESULTS_FORMAT, "config": asdict(config), "ksampler_calls": calls, "scores": scores},
        indent=1) + "\n")
    (results_dir / "results.md").write_text(markdown_report(scores, config, calls))
    tradeoff_plot(scores["sweep"]).save(results_dir / "tradeoff.png")
    ids = config.ids()[:2]
    keys = [(d, i, scene) for d in (PERSON, PET) for i in ids for scene in config.scenes_for(d, i)[:3]]
    refs = {(d, i): evaluation_reference(d, i) for d in (PERSON, PET) for i in ids}
    references = {k: (np.asarray(r.image), np.asarray(r.mask)) for k, r in refs.items()}
    two_rows = result["two_rows"]
    pair_keys = [(p, d, TWO_SUBJECT_SCENES[0]) for p, d in config.pair_ids()[:3]] if two_rows else []
    pair_refs = {k: (reference_render(PERSON, k[0]), reference_render(PET, k[1])) for k in pair_keys}
    grid_image(result["rows"], two_rows, references, keys, pair_keys, pair_refs).save(results_dir / "grid.png")
    return scores


STAGE_REPORTS = {"clip/clip_report.json": "clip_report.json", "base/attention_share.json": "attention_share.json",
                 "base/base_report.json": "base_report.json"}  # what the README's figures come from


def reference_gaps(out_dir) -> dict:
    """{method name: [{step, loss_right, loss_wrong, gap_percent}]}: the trainer's ``validation`` events."""
    gaps = {}
    for name, method in METHODS.items():
        log_file = Path(out_dir) / "encoders" / method.file_key / "train_log.jsonl"
        events = [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.is_file() else []
        gaps[name] = [{k: e[k] for k in ("step", "loss_right", "loss_wrong", "gap_percent")}
                      for e in events if e.get("event") == "validation"]
    return gaps


def update_repository(out_dir) -> None:
    """Copy an experiment's published weights, results and stage reports to where the repository keeps them."""
    out_dir = Path(out_dir)
    for rel in json.loads((out_dir / "weights" / "manifest.json").read_text()):
        (COMMITTED_WEIGHTS / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out_dir / "weights" / rel, COMMITTED_WEIGHTS / rel)
    for name in ("manifest.json", "scorers/scorer_report.json"):
        if (out_dir / "weights" / name).is_file():
            shutil.copyfile(out_dir / "weights" / name, COMMITTED_WEIGHTS / name)
    COMMITTED_RESULTS.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        shutil.copyfile(out_dir / "results" / name, COMMITTED_RESULTS / name)
    for source, name in STAGE_REPORTS.items():
        if (out_dir / source).is_file():
            shutil.copyfile(out_dir / source, COMMITTED_RESULTS / name)
    (COMMITTED_RESULTS / "reference_gap.json").write_text(json.dumps(reference_gaps(out_dir), indent=1) + "\n")


def compare_results(scores: dict, reference: dict) -> float:
    """The largest absolute difference between two results' numbers (every score, every image)."""
    def numbers(tree, prefix=""):
        if isinstance(tree, dict):
            for key, value in tree.items():
                yield from numbers(value, f"{prefix}/{key}")
        elif isinstance(tree, (int, float)):
            yield prefix, float(tree)

    ours, theirs = dict(numbers(scores)), dict(numbers(reference))
    if set(ours) != set(theirs):
        raise ValueError(f"the results differ in what they measure: {sorted(set(ours) ^ set(theirs))[:5]}")
    return max(abs(ours[k] - theirs[k]) for k in ours)
