"""The training loop: micro-batches, accumulation, clipping, the optimizer step, and what a step leaves.

One optimizer step = ``grad_accum`` micro-batches per process; gradients averaged over processes;
clipped; AdamW; the schedule. Every ``save_every`` steps (and at the end, and on SIGINT/SIGTERM) rank 0
writes the weights and the whole training state; every ``sample_every`` steps a sample grid. A NaN or
infinite loss, gradient norm or parameter stops the run with ``TrainingDivergedError``; so do finite
parameters whose loss is not (checked before anything is written from them, the last step too). Nothing is
saved then: the parameters that made a NaN loss or gradient are not good, however finite (a too large step
leaves them at 1e30, and the NaN only shows one step later); a state written from them is renamed
``*.diverged``, and the error names the newest good state left. No state with non-finite parameters is
ever written.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch

from ..nested_attention_core.profiling import scope
from .batch import assemble, plan_row
from .cache import STALE_TEMP_AGE_S, entry_folders
from .dist import all_mean, any_rank, average_gradients, barrier
from .errors import TrainingDivergedError
from .logbook import Logbook
from .validation import ReferenceGap
from .optim import apply_hyperparameters, clip_gradients
from .outputfiles import prune_step_weights, remove_stale_temp_files, tensor_bytes, writing
from .outputlock import hold_output
from .samples import render_grid, sample_prompts
from .session import TrainingSession
from .state import (capture_rng, check_compatible, check_processes, latest_state, load_state, prune_states,
                    restore_rng, save_state, seed_everything, state_path)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    weights: Optional[Path]  # the last weights written (None on ranks other than 0)
    step: int  # optimizer steps done
    status: str  # "finished" | "stopped"
    signal: Optional[str] = None  # what stopped it ("SIGTERM", "SIGINT"), when stopped


class StopSignals:
    """SIGINT/SIGTERM ask the loop to save and stop after the current step. A second SIGINT interrupts at once,
    without saving: the way out when saving hangs (a full disk, a stuck file system); documented in --help."""

    def __init__(self):
        self.requested: Optional[str] = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no signal handling
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            log.warning("second SIGINT: exiting without saving; continue from the last saved state with "
                        "--resume latest")
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        log.warning("%s received: saving the training state after this step, then stopping (a second Ctrl-C exits "
                    "at once without saving)", self.requested)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def plans_for(session: TrainingSession, micro_index: int):
    cfg = session.config
    epoch, rows = session.order.micro_batch(micro_index)
    plans = [plan_row(session.data, image, epoch, position, cfg.seed, cfg.reference, cfg.augment_views,
                      (cfg.drop_text, cfg.drop_subject, cfg.drop_both), cfg.reference_mask) for image, position in rows]
    return epoch, plans


def micro_batch_loss(session: TrainingSession, plans) -> torch.Tensor:
    """The mean denoising loss of one micro-batch, with the encoder's graph attached."""
    den = session.denoiser
    with scope("data"):
        batch = assemble(session.store, session.data, plans, den.model_sampling, den.process_latent_in,
                         session.config.seed, session.config.background_loss_weight).to(session.device)
    with scope("subject_encoder"), torch.autocast(session.device.type, dtype=session.autocast_dtype,
                                                  enabled=session.autocast_dtype is not None):
        nested = session.method.nested(session.encoder, batch.references)
    with scope("denoise"):
        return den.losses(batch, nested, session.autocast_dtype).mean()


def optimizer_step(session: TrainingSession, step: int) -> tuple[float, float, int, bool]:
    """One optimizer step; returns (mean loss over processes, grad norm, epoch, finite): ``checked_optimizer_step``
    with its problem reduced to "none"."""
    loss, grad_norm, epoch, problem = checked_optimizer_step(session, step)
    return loss, grad_norm, epoch, problem is None


def checked_optimizer_step(session: TrainingSession, step: int) -> tuple[float, float, int, Optional[str]]:
    """One optimizer step; returns (mean loss over processes, grad norm, epoch, problem). ``problem`` is None for
    a sound step; "loss" or "gradients": they became NaN or infinite, from the parameters as they were, which
    are left unchanged; "parameters": the update itself made them NaN or infinite (from finite gradients)."""
    cfg, params = session.config, session.parameters
    session.optimizer.zero_grad(set_to_none=True)
    total, finite, epoch = torch.zeros((), device=session.device), True, 0
    for micro in range(cfg.grad_accum):
        epoch, plans = plans_for(session, step * cfg.grad_accum + micro)
        loss = micro_batch_loss(session, plans)
        finite = finite and bool(torch.isfinite(loss))
        if loss.requires_grad:  # False when every row's subject was dropped: nothing to learn from
            with scope("backward"):
                session.scaler.scale(loss / cfg.grad_accum).backward()
        total += loss.detach() / cfg.grad_accum
    if any_rank(not finite, session.dist, session.device):
        return float("nan"), float("nan"), epoch, "loss"
    for p in params:  # a parameter without gradient steps with zeros (moments decay), on every rank alike
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    with scope("gradients"):  # averaged over processes, unscaled, clipped
        average_gradients(params, session.dist)
        session.scaler.unscale_(session.optimizer)
        grad_norm = clip_gradients(params, cfg.max_grad_norm)
    mean_loss = float(all_mean(total, session.dist))
    # fp16 gradient scaling skips a step with non-finite gradients by itself (and lowers its scale)
    if not session.scaler.is_enabled() and not math.isfinite(float(grad_norm)):
        return mean_loss, float(grad_norm), epoch, "gradients"
    with scope("optimizer"):
        session.scaler.step(session.optimizer)
        session.scaler.update()
        session.scheduler.step()
    with scope("finite_check"):
        sound = parameters_finite(params)
    if any_rank(not sound, session.dist, session.device):
        return mean_loss, float(grad_norm), epoch, "parameters"
    return mean_loss, float(grad_norm), epoch, None


def parameters_usable(session: TrainingSession, step: int) -> bool:
    """Whether the parameters after step ``step`` give a finite loss, on every process: checked before anything
    is written from them. A finite update can still leave them unusable (``--lr 1e6`` puts them near 1e6, and the
    next forward pass is NaN); during training the next step's loss shows it, but after the last step, or before
    a save, nothing else would. One forward pass without gradients on the rows of the step just done (features
    cached), every row with its subject (a row whose subject is dropped does not depend on the encoder); the
    random generators are left as they were, so a run with more checks trains exactly like one with fewer."""
    cfg = session.config
    _, plans = plans_for(session, step * cfg.grad_accum - 1)
    plans = [replace(plan, drop="none") for plan in plans]
    rng = capture_rng()
    try:
        with torch.no_grad(), scope("usable_check"):
            finite = bool(torch.isfinite(micro_batch_loss(session, plans)))
    finally:
        restore_rng(rng)
    return not any_rank(not finite, session.dist, session.device)


def parameters_finite(parameters) -> bool:
    """Whether every parameter is finite. One sum per tensor says so without a copy (a NaN or an
    infinity makes the sum NaN or infinite); only when a sum is not finite, which a finite tensor
    whose sum overflows float32 can also give, are the elements checked one by one. (The check by
    ``abs().amax()`` copied every parameter: 2.6 s of a 5.6 s SDXL step on a CPU.)"""
    parameters = [p.detach() for p in parameters]
    if bool(torch.stack([p.sum() for p in parameters]).isfinite().all()):
        return True
    return all(bool(p.isfinite().all()) for p in parameters)


def resume(session: TrainingSession, logbook_events: list) -> int:
    cfg = session.config
    path = latest_state(cfg.states_dir) if cfg.resume == "latest" else Path(cfg.resume)
    if path is None:
        log.info("--resume latest: no state in %s yet, starting from step 0", cfg.states_dir)
        return 0
    state = load_state(path)
    check_compatible(path, state, cfg.to_json(), session.identity)
    check_processes(path, state, session.dist.world_size)
    session.encoder.load_state_dict(state["encoder"])
    session.optimizer.load_state_dict(state["optimizer"])
    session.scheduler.load_state_dict(state["scheduler"])
    apply_hyperparameters(session.optimizer, session.scheduler, cfg)  # a changed --lr etc. applies, as announced
    if state["scaler"]:  # empty when written without fp16 gradient scaling: a --precision fp16 resume starts fresh
        session.scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"])
    logbook_events.append(("resume", {"state": str(path), "step": state["step"]}))
    log.info("resumed %s at step %d", path, state["step"])
    return int(state["step"])


def save(session: TrainingSession, step: int, epoch: int, final: bool = False) -> Optional[Path]:
    """Rank 0 writes the weights (step-numbered, or the final name) and the training state."""
    cfg = session.config
    if not parameters_finite(session.encoder.parameters()):  # never a state or weights that cannot be used
        raise TrainingDivergedError(f"the encoder's parameters are NaN or infinite at step {step}: nothing was "
                                    f"saved; continue from the last state in {cfg.states_dir} with a lower --lr")
    if session.dist.is_main:
        cfg.output_dir.mkdir(parents=True, exist_ok=True)
        weights = cfg.output_dir / (f"{cfg.name}.safetensors" if final else f"{cfg.name}-step{step:07d}.safetensors")
        kept = latest_state(cfg.states_dir)
        advice = (f"free some space there (--keep-states and --keep-weights keep fewer files) or move it, then "
                  f"continue with --resume {kept if kept else 'latest'}" + ("" if kept else " (no state was written "
                                                                               "yet: the run starts again)"))
        with writing(weights, tensor_bytes(session.encoder.state_dict()), "the weights", advice):
            session.save_weights(weights)
        payload = {"step": step, "epoch": epoch, "micro_batches_done": step * cfg.grad_accum,
                   "encoder": session.encoder.state_dict(), "optimizer": session.optimizer.state_dict(),
                   "scheduler": session.scheduler.state_dict(), "scaler": session.scaler.state_dict(),
                   "rng": capture_rng(), "config": cfg.to_json(), "identity": session.identity,
                   "world_size": session.dist.world_size}
        path = state_path(cfg.states_dir, step)
        with writing(path, tensor_bytes(payload), "the training state", advice):
            save_state(path, payload)
        prune_states(cfg.states_dir, cfg.keep_states)
        prune_step_weights(cfg.output_dir, cfg.name, cfg.keep_weights)
    barrier(session.dist)
    return weights if session.dist.is_main else None


def diverged(session: TrainingSession, step: int, problem: str, logbook: Logbook) -> TrainingDivergedError:
    """The error of a run whose ``problem`` (loss, gradients, parameters) became NaN or infinite in step
    ``step + 1``. The parameters after step ``step`` made a NaN loss or gradient: a state written at that step
    is renamed ``*.diverged`` (so --resume latest skips it, and so do the weights loaders), and the newest state
    left, made before and followed by a sound step, is named. A NaN update (parameters) came from finite
    gradients: the states already written are sound."""
    cfg = session.config
    set_aside = []
    if session.dist.is_main and problem in ("loss", "gradients") and step > 0:
        for path in (state_path(cfg.states_dir, step), cfg.output_dir / f"{cfg.name}-step{step:07d}.safetensors"):
            if path.is_file():
                os.replace(path, path.with_name(path.name + ".diverged"))
                set_aside.append(path.name)
    barrier(session.dist)
    kept = latest_state(cfg.states_dir)
    what = {"loss": "the loss became NaN or infinite", "gradients": "the gradients became NaN or infinite",
            "parameters": "the parameters became NaN or infinite (from finite gradients: the step was too large)",
            "update": "the parameters became unusable (finite, but the loss they give is NaN or infinite: the step "
                      "was too large; nothing was written from them)"}
    message = f"training diverged: {what[problem]} at step {step + 1}"
    if set_aside:
        message += (f"; {' and '.join(set_aside)}, written after step {step}, led to it and "
                    f"{'were' if len(set_aside) > 1 else 'was'} renamed *.diverged")
    if kept is not None:
        message += (f"; the newest good state is {kept}: continue from it with --resume {kept} and a lower --lr "
                    "(e.g. a tenth), or --precision bf16 or fp32, or check the data")
    else:
        hint = "; --save-every K writes one every K steps" if not cfg.save_every else ""
        message += (f"; no good training state was kept ({cfg.states_dir} has none from before the divergence"
                    f"{hint}): start again with a lower --lr (e.g. a tenth), or --precision bf16 or fp32, or check "
                    "the data")
    logbook.event("diverged", step=step + 1, problem=problem, kept=str(kept) if kept else None,
                  set_aside=set_aside)
    return TrainingDivergedError(message)


def train(session: TrainingSession) -> TrainResult:
    """Train to --max-steps (or a stop signal), holding the output folder for the whole run: a second run into
    the same --output stops at once (outputlock.py)."""
    with hold_output(session.config, session.dist, session.device):
        return run(session)


def run(session: TrainingSession) -> TrainResult:
    cfg, dist = session.config, session.dist
    events: list = []
    if dist.is_main:  # what runs killed while writing left (this run holds the folder)
        remove_stale_temp_files(cfg.output_dir, cfg.states_dir)
        if cfg.cache_path is not None:
            remove_stale_temp_files(*entry_folders(cfg.cache_path), min_age_s=STALE_TEMP_AGE_S)
    seed_everything(cfg.seed, dist.rank)
    start = resume(session, events) if cfg.resume else 0
    name = "nested attention" if session.method.name == "nested" else f"{session.method.name} (baseline)"
    logbook = Logbook(cfg.log_path, dist.is_main, cfg.max_steps, start, cfg.progress_bar, name,
                      cfg.tensorboard_dir if cfg.log_with == "tensorboard" else None)
    prompts = sample_prompts(session.data, cfg.sample_prompts, cfg.sample_count, session.has_word) \
        if cfg.sample_every and dist.is_main else []
    gap = ReferenceGap(session, cfg.validation_data) if cfg.validation_data and dist.is_main else None
    if start == 0:
        logbook.write(session.data.summary())
    for name, fields in events:
        logbook.event(name, **fields)
    logbook.event("start", step=start, max_steps=cfg.max_steps, processes=dist.world_size,
                  global_batch=cfg.batch_size * cfg.grad_accum * dist.world_size, encoder=session.encoder_source,
                  device=str(session.device), precision=str(session.autocast_dtype or "fp32"))
    weights, step, epoch, status = None, start, 0, "finished"
    samples_per_step = cfg.batch_size * cfg.grad_accum * dist.world_size
    try:
        with StopSignals() as stop:
            while step < cfg.max_steps:
                session.denoiser.load()
                started = time.perf_counter()
                loss, grad_norm, epoch, problem = checked_optimizer_step(session, step)
                if problem is not None:
                    raise diverged(session, step, problem, logbook)
                step += 1
                elapsed = time.perf_counter() - started
                lr = session.scheduler.get_last_lr()[0]
                logbook.step(step, epoch, loss, lr, grad_norm, samples_per_step / elapsed,
                             write=step % cfg.log_every == 0 or step == cfg.max_steps or step == start + 1)
                stopping = any_rank(stop.requested is not None, dist, session.device)
                writes = (step == cfg.max_steps or stopping or bool(cfg.save_every and step % cfg.save_every == 0)
                          or bool(cfg.validation_data and (step % cfg.validate_every == 0 or step == start + 1))
                          or bool(cfg.sample_every and step % cfg.sample_every == 0))  # alike on every rank
                if writes and not parameters_usable(session, step):  # the last step too: no next step shows it
                    raise diverged(session, step - 1, "update", logbook)
                if cfg.save_every and step % cfg.save_every == 0 and step < cfg.max_steps and not stopping:
                    weights = save(session, step, epoch)
                    logbook.event("save", step=step, weights=str(weights))
                if gap is not None and (step % cfg.validate_every == 0 or step == cfg.max_steps or step == start + 1):
                    with scope("validation"):
                        logbook.event("validation", step=step, **gap(session))
                if prompts and (step % cfg.sample_every == 0 or step == cfg.max_steps):
                    grid = render_grid(session, prompts, cfg.samples_dir / f"step{step:07d}.png")
                    logbook.event("samples", step=step, path=str(grid))
                if stopping:
                    weights, status = save(session, step, epoch), "stopped"
                    logbook.event("stop", step=step, signal=stop.requested, weights=str(weights))
                    log.warning("stopped at step %d; continue with --resume latest", step)
                    return TrainResult(weights, step, status, stop.requested)
            weights = save(session, step, epoch, final=True)
            logbook.event("end", step=step, weights=str(weights))
            return TrainResult(weights, step, status)
    finally:
        logbook.close()
