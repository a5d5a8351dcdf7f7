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
    assert re.search(rf"{re.escape(str(out))}.*PID {holder.pid}.* no longer holds it", caplog.text), caplog.text
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


def test_taking_over_a_killed_runs_lock_says_so_without_contradicting_itself(training, tmp_path, caplog):
    """The take-over warning read "taking over the lock of PID N, no longer running, but a process it started still
    holds the lock: end that process, which is no longer running" (the text for a lock held now). Measures: the
    warning names the dead PID and says it no longer holds the lock, and nothing says the lock is still held."""
    from nested_attention.training.outputlock import LOCK_NAME, OutputLock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{dead.pid}\n")
    caplog.set_level(logging.WARNING, logger="nested_attention.training")
    lock = OutputLock(tmp_path).acquire()
    lock.release()
    assert f"taking over the lock file of PID {dead.pid}, which no longer holds it" in caplog.text, caplog.text
    assert "still holds" not in caplog.text and "end that process" not in caplog.text, caplog.text


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nothing can be written into: a read-only tmpfs when running as root (permissions do not stop root),
    else a folder without write permission."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs as root here: {mounted.stderr.decode()[:200]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("case", ["output", "cache_dir", "busy"])
def test_an_unwritable_or_busy_output_or_cache_stops_before_any_model_loads(training, helpers, tiny_models,
                                                                           comfy_root, tmp_path, read_only_folder,
                                                                           monkeypatch, caplog, case):
    """A read-only --output or --cache-dir ended in a raw OSError traceback after the models had loaded (15 s on
    SDXL), a busy --output also only after loading. Measures, for the command (cli.main): exit code 2, an error
    naming the flag and the folder, and the base models never loaded."""
    from nested_attention.training import cli, session

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the output folders were checked")

    monkeypatch.setattr(session, "load_base_models", no_loading)
    data = helpers.make_data(tmp_path / "data", {"a": 1})
    out, overrides = tmp_path / "out", {}
    if case == "output":
        out = read_only_folder / "run"
    elif case == "cache_dir":
        overrides["cache_dir"] = str(read_only_folder / "cache")
    args = [*helpers.cli_args(tiny_models, comfy_root, data, out, **overrides), "--cpu"]
    caplog.set_level(logging.ERROR, logger="nested_attention.training")
    if case == "busy":
        out.mkdir()
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out / ".train.lock")], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            assert cli.main(args) == 2
        finally:
            holder.kill()
            holder.wait()
        assert f"--output {out} is in use by another training run (PID {holder.pid}" in caplog.text, caplog.text
        return
    assert cli.main(args) == 2
    flag, folder = ("--output", out) if case == "output" else ("--cache-dir", read_only_folder / "cache")
    assert f"{flag} {folder} is not writable (" in caplog.text and f"give {flag} a folder" in caplog.text, caplog.text
