"""The whole training state, saved atomically and resumed exactly.

A state file (``<output>/states/state-<step>.pt``) holds the encoder, optimizer, scheduler and
gradient-scaler states, the RNG states (Python, numpy, torch CPU and CUDA), the number of optimizer
steps done and the data position (epoch and micro-batch), and what it was made with (config, model
identities, encoder layout), checked on resume. Written to a temp file and renamed, so a crash or a
kill never leaves a half-written state; read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..nested_attention_core.files import new_file_mode
from ..nested_attention_core.methods import NESTED
from .config import RENAMED_FIELDS, REPORTING_FIELDS, STRUCTURAL_FIELDS
from .errors import ResumeError

log = logging.getLogger(__name__)

STATE_VERSION = 1
UNRECORDED_IDENTITY = {"method": NESTED.name}  # states written before the identity recorded the method
UNRECORDED_CONFIG = {"optimizer": "adamw"}  # states written before --optimizer existed
_STATE_NAME = re.compile(r"^state-(\d+)\.pt$")


def state_path(states_dir: Path, step: int) -> Path:
    return Path(states_dir) / f"state-{step:07d}.pt"


def list_states(states_dir: Path) -> list[tuple[int, Path]]:
    states_dir = Path(states_dir)
    if not states_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in states_dir.iterdir() if (m := _STATE_NAME.match(p.name))]
    return sorted(found)


def latest_state(states_dir: Path) -> Optional[Path]:
    states = list_states(states_dir)
    return states[-1][1] if states else None


def prune_states(states_dir: Path, keep: int) -> None:
    for _, path in list_states(states_dir)[:-keep]:
        path.unlink(missing_ok=True)


def seed_everything(seed: int, rank: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) per rank. The trainer's own draws use generators
    seeded per sample (batch.py); this covers whatever else draws from the global generators."""
    random.seed(seed * 1000 + rank)
    np.random.seed((seed * 1000 + rank) % 2 ** 32)
    torch.manual_seed(seed * 1000 + rank)


def capture_rng() -> dict:
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {"python": [py_version, list(py_state), py_gauss],
             "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                       float(np_gauss)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: concurrent writers never share it
    try:
        with open(tmp, "wb") as f:  # closed here even when torch.save fails: its writer's traceback holds no space
            torch.save({"version": STATE_VERSION, **payload}, f)
        os.chmod(tmp, new_file_mode())  # as any new file, whatever mode the writer created it with
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"--resume {path}: no such state file; give a file from <output>/states, or 'latest'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types on damaged files
        raise ResumeError(f"--resume {path} cannot be read ({type(err).__name__}: {str(err)[:200]}); resume from an "
                          "older state in the same folder") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ResumeError(f"--resume {path} is not a training state of this trainer (version "
                          f"{state.get('version') if isinstance(state, dict) else None!r}, expected {STATE_VERSION})")
    return state


def check_compatible(path: Path, state: dict, config_json: str, identity: dict) -> None:
    """Raise ResumeError if the state was made for other models, another encoder or another training
    method; warn on other changes."""
    then_identity = {**UNRECORDED_IDENTITY, **state.get("identity", {})}
    for key, value in identity.items():
        if then_identity.get(key) != value:
            raise ResumeError(f"--resume {path} was made with another {key.replace('_', ' ')} "
                              f"({then_identity.get(key)!r}, now {value!r}): resume with the same "
                              "--checkpoint, --clip-vision, encoder and method, or start a new --output")
    recorded = {RENAMED_FIELDS.get(key, key): value for key, value in json.loads(state["config"]).items()}
    then, now = {**UNRECORDED_CONFIG, **recorded}, json.loads(config_json)
    then.update({k: now[k] for k in now if k not in then})  # flags newer than the state: taken as they are now
    changed = sorted(k for k in now if k not in REPORTING_FIELDS and then.get(k) != now[k])
    structural = [k for k in changed if k in STRUCTURAL_FIELDS]
    if structural:
        raise ResumeError(f"--resume {path}: {', '.join('--' + k.replace('_', '-') for k in structural)} differ from "
                          "the run that wrote it; resume with the same values, or start a new --output")
    if "init" in changed:  # only builds a new encoder; a resumed one comes from the state
        log.warning("resuming %s: --init is not used when resuming (the encoder's weights come from the state)", path)
    applied = [k for k in changed if k != "init"]
    if applied:  # each of them is read from the config again, or set into the loaded optimizer (loop.resume)
        log.warning("resuming %s with changed %s; the run continues with the new values", path,
                    ", ".join("--" + k.replace("_", "-") for k in applied))


def check_processes(path: Path, state: dict, world_size: int) -> None:
    """Raise ResumeError if the state was written by another number of processes: the global batch (and the rows
    of every step) would change, as with another --batch-size. States that do not record it are taken as is."""
    then = state.get("world_size")
    if then is None or int(then) == world_size:
        return
    config = json.loads(state["config"])
    batch, accum = config.get("batch_size"), config.get("grad_accum")

    def processes(n: int) -> str:
        return f"{n} process{'es' if n > 1 else ''}"

    how = f"torchrun with {processes(then)} in all" if then > 1 else "one process, without torchrun"
    raise ResumeError(f"--resume {path} was written by {processes(then)} (global batch {batch * accum * then} = "
                      f"--batch-size {batch} x --grad-accum {accum} x {processes(then)}); this run has "
                      f"{processes(world_size)}, which changes the global batch and the rows of every step. It "
                      f"resumes exactly with {how} and the same --batch-size {batch} --grad-accum {accum}; or start "
                      "a new --output")
