"""Command line of the toy world.

    python -m nested_attention.toyworld preview OUT.png        contact sheet: identities x scenes, two-subject renders
    python -m nested_attention.toyworld train-scorers OUT_DIR  train and measure the identity and scene models
    python -m nested_attention.toyworld write-dataset ROOT     a training folder in the trainer's layout
    python -m nested_attention.toyworld experiment OUT_DIR     the whole experiment (data, scorers, base, encoders, evaluation)
    python -m nested_attention.toyworld evaluate OUT_DIR       re-evaluate the committed weights (toyworld/weights)

``--help`` on each command lists its flags (the package is installed by ``make setup``: ``pip install -e .``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .dataset import write_training_folder
from .errors import ToyWorldError
from .evaluation import EvalConfig
from .experiment import PRESETS, STAGES, run as run_experiment
from .progress import tqdm_bar
from .publish import (COMMITTED_RESULTS, COMMITTED_WEIGHTS, RESULTS_FORMAT, compare_results, run_evaluation,
                      update_repository)
from .identity import DOMAINS, HELDOUT_START
from .preview import contact_sheet, default_identities
from .scorer_pipeline import ScorerPipelineConfig, train_scorers
from .stage_runner import run_parallel
from .scorer_training import FitConfig

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toyworld", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-level", default="INFO", help="logging level of the toy world and the trainer "
                        "(default: INFO; ComfyUI's own messages show from WARNING up)")
    commands = parser.add_subparsers(dest="command", required=True)

    preview = commands.add_parser("preview", help="write a contact sheet PNG of identities x scenes")
    preview.add_argument("out", type=Path, help="the PNG to write")
    preview.add_argument("--per-domain", type=int, default=6, help="identities of each domain, one row each (default: 6)")
    preview.add_argument("--start", type=int, default=0, help="first identity id (default: 0)")
    preview.add_argument("--size", type=int, default=64, help="render size in pixels (default: 64)")
    preview.add_argument("--seed", type=int, default=0, help="variation seed of the first row (default: 0)")
    preview.add_argument("--zoom", type=int, default=2, help="nearest-neighbour upscaling for viewing (default: 2)")

    scorers = commands.add_parser("train-scorers", help="train the identity and scene models, measure them on "
                                  "held-out identities, save them with a report")
    defaults = ScorerPipelineConfig()
    scorers.add_argument("out_dir", type=Path, help="folder for identity.safetensors, scene.safetensors, scorer_report.json")
    scorers.add_argument("--train-ids", type=int, default=defaults.train_ids_per_domain,
                         help=f"training identities per domain (default: {defaults.train_ids_per_domain})")
    scorers.add_argument("--renders", type=int, default=defaults.renders_per_identity,
                         help=f"renders per training identity (default: {defaults.renders_per_identity})")
    scorers.add_argument("--identity-epochs", type=int, default=defaults.identity_fit.epochs,
                         help=f"identity net epochs (default: {defaults.identity_fit.epochs})")
    scorers.add_argument("--scene-epochs", type=int, default=defaults.scene_fit.epochs,
                         help=f"scene net epochs (default: {defaults.scene_fit.epochs})")
    scorers.add_argument("--eval-ids", type=int, default=defaults.eval_ids_per_domain,
                         help=f"held-out identities per domain to measure on (default: {defaults.eval_ids_per_domain})")
    scorers.add_argument("--seed", type=int, default=0, help="seed of the renders and the training (default: 0)")
    scorers.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")

    data = commands.add_parser("write-dataset", help="render a training folder (subject folders, captions, masks)")
    data.add_argument("root", type=Path, help="a new or empty folder")
    data.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS, help="default: both")
    data.add_argument("--first-id", type=int, default=0, help="first identity id (default: 0)")
    data.add_argument("--ids", type=int, default=100, help="identities per domain (default: 100)")
    data.add_argument("--renders", type=int, default=8, help="renders per identity (default: 8)")
    data.add_argument("--size", type=int, default=64, help="image size (default: 64)")
    data.add_argument("--seed", type=int, default=0, help="scene and variation seed (default: 0)")
    data.add_argument("--no-masks", action="store_true", help="do not write subject masks")
    data.add_argument("--allow-heldout", action="store_true",
                      help=f"allow held-out identities (ids >= {HELDOUT_START}), e.g. for evaluation references")

    experiment = commands.add_parser("experiment", help="run the experiment's stages (finished stages are skipped)")
    experiment.add_argument("out_dir", type=Path, help="output folder (data, models, runs, results)")
    experiment.add_argument("--preset", default="full", choices=sorted(PRESETS),
                            help="full: the published experiment (<= 150 min on 2 cores); smoke: tiny sizes (default: full)")
    experiment.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES,
                            help="stages to run, in order (default: all)")
    experiment.add_argument("--jobs", type=int, default=1,
                            help="stages run at once, each in its own process as soon as the stages it builds on "
                                 "are done (scorers, vae and clip side by side); 1: one after another in this "
                                 "process (default: 1; `make toyworld` uses 2)")
    experiment.add_argument("--update-repository", action="store_true",
                            help="finally copy the published weights to toyworld/weights and the results to "
                                 "docs/toyworld (what gets committed)")

    evaluate = commands.add_parser("evaluate", help="measure published weights (default: the committed ones) and "
                                   "compare with the committed results")
    evaluate.add_argument("out_dir", type=Path, help="folder for results.json, results.md, grid.png")
    evaluate.add_argument("--weights", type=Path, default=COMMITTED_WEIGHTS,
                          help=f"published weights folder (default: {COMMITTED_WEIGHTS})")
    evaluate.add_argument("--compare", type=Path, default=COMMITTED_RESULTS / "results.json",
                          help="results.json to compare with (default: the committed one)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("nested_attention.toyworld", "nested_attention.training"):
        logging.getLogger(name).setLevel(args.log_level.upper())
    try:
        if args.command == "preview":
            sheet = contact_sheet(default_identities(args.per_domain, args.start), size=args.size, seed=args.seed)
            if args.zoom > 1:
                sheet = sheet.resize((sheet.width * args.zoom, sheet.height * args.zoom), 0)  # 0: nearest
            args.out.parent.mkdir(parents=True, exist_ok=True)
            sheet.save(args.out)
            log.info("wrote %s (%dx%d)", args.out, sheet.width, sheet.height)
        elif args.command == "train-scorers":
            config = ScorerPipelineConfig(
                train_ids_per_domain=args.train_ids, renders_per_identity=args.renders,
                eval_ids_per_domain=args.eval_ids, seed=args.seed, threads=args.threads,
                identity_fit=FitConfig(epochs=args.identity_epochs, seed=args.seed),
                scene_fit=FitConfig(epochs=args.scene_epochs, seed=args.seed))
            report = train_scorers(args.out_dir, config)
            log.info("held-out report:\n%s", json.dumps({k: report[k] for k in ("identity", "scene", "timings")}, indent=1))
        elif args.command == "experiment":
            if args.jobs == 1:
                run_experiment(args.out_dir, args.preset, args.stages)
            else:
                run_parallel(args.out_dir, args.preset, args.stages, args.jobs)
            if args.update_repository:
                update_repository(args.out_dir)
        elif args.command == "evaluate":
            scores = run_evaluation(args.weights, args.out_dir, EvalConfig(), tqdm_bar)
            print((args.out_dir / "results.md").read_text())
            if args.compare.is_file():
                committed = json.loads(args.compare.read_text())
                if committed.get("format") != RESULTS_FORMAT:
                    print(f"{args.compare} is of another results structure (format {committed.get('format', 1)}, this "
                          f"evaluation writes format {RESULTS_FORMAT}): not compared; replace it with "
                          f"{args.out_dir / 'results.json'} (and the other result files) to commit the new results")
                else:
                    difference = compare_results(scores, committed["scores"])
                    print(f"largest difference from {args.compare}: {difference:.2e}")
        else:
            write_training_folder(args.root, args.domains, range(args.first_id, args.first_id + args.ids), args.renders,
                                  seed=args.seed, size=args.size, masks=not args.no_masks,
                                  allow_heldout=args.allow_heldout)
    except (ToyWorldError, ValueError) as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
