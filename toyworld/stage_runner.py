"""The experiment's stages as separate processes, each started as soon as the stages it builds on are done.

``experiment.REQUIRES`` is a DAG: scorers need nothing, vae and clip need only the data. With
``--jobs 2`` (``make toyworld``, two cores) data + scorers run side by side, then vae beside the
scorers and, once they are done, beside clip (run 12: 24 min from the start to the base's; the four
stages' one-thread times add up to 44 min); ``--jobs 3`` also runs scorers, vae and clip at once
(three processes). A stage started while others run gets one torch thread; a stage started alone
gets every core. Each stage writes its log to ``OUT_DIR/logs/<stage>.log``; when one fails, the
others are stopped and the error names the stage and its log. Finished stages (stamped) are skipped,
as in the sequential run.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from .errors import ExperimentError
from .experiment import PRESETS, REQUIRES, STAGES, Stages

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5


def stage_command(out_dir: Path, preset: str, stage: str) -> list[str]:
    """The sequential command line that runs one stage (the same code path as ``experiment --stages``)."""
    return [sys.executable, "-m", "nested_attention.toyworld", "experiment", str(out_dir), "--preset", preset,
            "--stages", stage]


def ready_stages(stages, done: set, running: dict) -> list[str]:
    """Stages of ``stages`` not done nor running whose direct prerequisites are all done (or not asked for
    and already stamped: the caller counts those as done)."""
    return [s for s in stages if s not in done and s not in running and all(r in done for r in REQUIRES[s])]


def run_parallel(out_dir, preset: str = "full", stages=STAGES, jobs: int = 3) -> None:
    """Run ``stages`` of ``preset`` in ``out_dir``, up to ``jobs`` at once in child processes."""
    if jobs < 1:
        raise ExperimentError(f"--jobs is {jobs}; give 1 or more")
    out_dir = Path(out_dir)
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    book = Stages(out_dir, PRESETS[preset])
    stages = [s for s in STAGES if s in stages]
    done = {s for s in STAGES if book.done(s)}
    missing = [r for s in stages for r in REQUIRES[s] if r not in stages and r not in done]
    if missing:
        raise ExperimentError(f"stage(s) {', '.join(sorted(set(missing)))} must run first: add them to --stages, "
                              "or leave --stages out")
    running: dict[str, tuple[subprocess.Popen, object]] = {}
    cores = os.cpu_count() or 1
    try:
        while any(s not in done for s in stages):
            for stage in ready_stages(stages, done, running)[:max(0, jobs - len(running))]:
                alone = not running and len(ready_stages(stages, done, running)) == 1
                threads = cores if alone else 1
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
                stage_log = open(out_dir / "logs" / f"{stage}.log", "w")
                running[stage] = (subprocess.Popen(stage_command(out_dir, preset, stage), stdout=stage_log,
                                                   stderr=subprocess.STDOUT, env=env), stage_log)
                log.info("stage %s: started (%d thread%s, log %s)", stage, threads, "" if threads == 1 else "s",
                         stage_log.name)
            if not running:
                raise ExperimentError(f"no stage can start: {', '.join(s for s in stages if s not in done)}")
            time.sleep(POLL_SECONDS)
            for stage, (process, stage_log) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                stage_log.close()
                del running[stage]
                if code != 0 or not book.done(stage):
                    raise ExperimentError(f"stage {stage} failed (exit code {code}); its log: {stage_log.name}")
                done.add(stage)
                log.info("stage %s: done", stage)
    finally:
        for stage, (process, stage_log) in running.items():
            process.terminate()
            process.wait()
            stage_log.close()
            log.info("stage %s: stopped", stage)
