"""One run per output folder: a second run stops at once, a killed run's lock is taken over, temp files never clash."""
from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import sys

import pytest
import torch

# Another run holding <output>/.train.lock as a run does: an exclusive flock, and its PID in the file.
HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_into_the_same_output_stops_at_once_and_a_killed_runs_lock_is_taken_over(
        training, sdxl_models, helpers, tiny_models, tmp_path, caplog):
    from nested_attention.training.errors import TrainingConfigError
    from nested_attention.training.loop import train
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    out = tmp_path / "out"
    out.mkdir()
    session = open_session(helpers.tiny_config(tiny_models, data, out, max_steps=2, cache=False), models=sdxl_models)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out / ".train.lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TrainingConfigError, match=rf"--output {re.escape(str(out))} is in use by another training "
                                                      rf"run \(PID {holder.pid}\b.*pass another --output"):
            train(session)
        assert not (out / "train_log.jsonl").exists() and not (out / "states").exists()  # stopped before writing
    finally:
        holder.kill()
        holder.wait()

    # the holder was killed: its PID is still in the lock file, but it runs no more and its flock is gone
    caplog.set_level(logging.WARNING, logger="nested_attention.training")
    result = train(session)
    assert result.status == "finished" and result.step == 2
    assert re.search(rf"{re.escape(str(out))}.*PID {holder.pid}.* no longer running", caplog.text), caplog.text
    fd = os.open(out / ".train.lock", os.O_RDWR)  # released when the run ended
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_a_state_being_written_by_two_processes_at_once_uses_two_temp_files(training, tmp_path, monkeypatch):
    """Two processes saving the same step (two runs into one folder, before the lock existed) shared
    state-N.pt.tmp: the first rename moved the second writer's temp file away and the second crashed."""
    from nested_attention.training import state

    path = state.state_path(tmp_path / "states", 3)
    real_save, real_getpid = torch.save, os.getpid
    pids = iter([1001, 1002])
    monkeypatch.setattr(state.os, "getpid", lambda: next(pids, real_getpid()))

    def save_while_another_process_saves(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if obj["step"] == 3:  # the other process writes and renames its state while ours is half done
            monkeypatch.setattr(state.torch, "save", real_save)
            state.save_state(path, {"step": 4})

    monkeypatch.setattr(state.torch, "save", save_while_another_process_saves)
    state.save_state(path, {"step": 3})
    assert state.load_state(path)["step"] == 3  # ours renamed last
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
