"""What a run writes into its output folder: a full disk as one clear error with the last good state kept and no temp
file left, --keep-weights, and temp files of killed runs removed at start."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
import torch


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> a folder on a real tmpfs of that size (a full disk for real); needs root, else skipped."""
    mounted = []

    def mount(size: str):
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        if os.geteuid() != 0:
            pytest.skip("a small real file system needs root (mount -t tmpfs)")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode()[:200]}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("size, failing, kept_step", [
    ("8M", "the training state state-0000002.pt", 1), ("1M", "the weights nested_attention_sdxl_tiny-step0000001", None),
    ("16k", "the feature-cache entry", None)])
def test_a_full_disk_stops_with_the_folder_and_its_free_space_and_keeps_the_last_good_state(
        training, sdxl_models, helpers, tiny_models, tmp_path, small_disk, size, failing, kept_step):
    """On a real tmpfs of 8 MiB the step-1 weights and state fit and the step-2 state does not; on 1 MiB not even the
    step-1 weights do; on 16 KiB with the feature cache in the output folder, a text feature (24 KB) does not.
    They ended in torch's "[enforce fail at inline_container.cc:672] . unexpected pos" and raw safetensors
    tracebacks. Measures: OutputWriteError naming the file, the folder, "the disk is full" and the MiB free there;
    the step-1 state still loads with finite weights (8 MiB); no *.tmp file anywhere."""
    from nested_attention.training import loop
    from nested_attention.training.errors import OutputWriteError
    from nested_attention.training.session import open_session
    from nested_attention.training.state import latest_state, load_state

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    out = small_disk(size) / "run"
    cache = size == "16k"
    session = open_session(helpers.tiny_config(tiny_models, data, out, max_steps=4, save_every=1, cache=cache),
                           models=sdxl_models)
    with pytest.raises(OutputWriteError) as caught:
        loop.train(session)
    message = str(caught.value)
    folder = out / "states" if kept_step else out / "feature_cache" if cache else out
    assert f"cannot write {failing}" in message and f"into {folder}" in message, message
    assert ": the disk is full (" in message and " MiB free there, the file needs about " in message, message
    assert "--resume" in message and (not cache or "--cache-dir" in message), message
    assert not [p for p in out.rglob("*.tmp")], sorted(out.rglob("*"))
    if kept_step is None:
        assert latest_state(out / "states") is None
        return
    kept = latest_state(out / "states")
    assert kept == out / "states" / f"state-{kept_step:07d}.pt" and f"--resume {kept}" in message, message
    state = load_state(kept)
    assert state["step"] == kept_step and all(torch.isfinite(t).all() for t in state["encoder"].values())


def test_keep_weights_keeps_the_newest_step_weights(training, sdxl_models, helpers, tiny_models, tmp_path):
    """Step weights were never pruned. Measures the weights files after 5 steps saved every step with
    --keep-weights 2: the step weights of steps 3 and 4 and the final weights, nothing else."""
    from nested_attention.training import loop
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    out = tmp_path / "out"
    loop.train(open_session(helpers.tiny_config(tiny_models, data, out, max_steps=5, save_every=1, keep_weights=2,
                                                cache=False), models=sdxl_models))
    assert sorted(p.name for p in out.glob("*.safetensors")) == [
        "nested_attention_sdxl_tiny-step0000003.safetensors", "nested_attention_sdxl_tiny-step0000004.safetensors",
        "nested_attention_sdxl_tiny.safetensors"]


def test_temp_files_of_killed_runs_are_removed_at_start(training, sdxl_models, helpers, tiny_models, tmp_path,
                                                        caplog):
    """A SIGKILL while a state is written leaves state-N.pt.<pid>.tmp (GBs on SDXL) for ever. Measures, after a run
    into that folder: the temp files of a process that no longer runs are gone (states/ and the output folder, with
    a warning naming them), one of a running process is left alone."""
    from nested_attention.training import loop
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    out = tmp_path / "out"
    (out / "states").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        stale = [out / "states" / f"state-0000003.pt.{dead.pid}.tmp",
                 out / f"nested_attention_sdxl_tiny-step0000003.safetensors.{dead.pid}.tmp"]
        busy = out / "states" / f"state-0000003.pt.{alive.pid}.tmp"
        for path in (*stale, busy):
            path.write_bytes(b"half a state")
        caplog.set_level(logging.WARNING, logger="nested_attention.training")
        loop.train(open_session(helpers.tiny_config(tiny_models, data, out, max_steps=1, cache=False),
                                models=sdxl_models))
        assert not any(p.exists() for p in stale) and busy.exists()
        assert all(str(p) in caplog.text for p in stale) and str(busy) not in caplog.text, caplog.text
    finally:
        alive.kill()
        alive.wait()


def _fill(folder, leave: int) -> None:
    """Fill the file system of ``folder`` up to ``leave`` bytes free."""
    import shutil

    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as f:
        try:
            f.write(b"\0" * max(0, free - leave))
        except OSError:
            pass


def test_a_full_disk_under_the_training_log_is_one_clear_error(small_disk):
    """train_log.jsonl on a full disk raised a raw OSError from json's write/flush in the middle of a step.
    Measures: OutputWriteError naming the log, its folder and "the disk is full"."""
    from nested_attention.training.errors import OutputWriteError
    from nested_attention.training.logbook import Logbook

    out = small_disk("64k") / "run"
    log = Logbook(out / "train_log.jsonl", True, 10, 0, False)
    try:
        log.write({"event": "start"})
        _fill(out.parent, 0)
        with pytest.raises(OutputWriteError) as caught:
            for _ in range(1000):  # a line is ~40 bytes: the page of the first write has room for a few more
                log.write({"event": "validation", "step": 1, "gap_percent": 0.5})
    finally:
        log.close()  # the buffered rest of the failed line cannot be written either: no second, raw error
    assert f"cannot write the training log train_log.jsonl into {out}: the disk is full" in str(caught.value)


def test_a_full_disk_under_a_sample_grid_is_one_clear_error_and_leaves_no_temp_file(small_disk):
    """A sample grid PNG on a full disk raised PIL's raw OSError and left its temp file. Measures: OutputWriteError
    naming the grid and "the disk is full"; no *.tmp and no grid left in the folder."""
    import numpy as np

    from nested_attention.training.errors import OutputWriteError
    from nested_attention.training.samples import write_png

    folder = small_disk("64k") / "samples"
    folder.mkdir()
    _fill(folder.parent, 0)
    noise = np.random.default_rng(0).integers(0, 256, (256, 768, 3), dtype=np.uint8)  # does not compress
    with pytest.raises(OutputWriteError) as caught:
        write_png(noise, folder / "step0000010.png")
    assert f"cannot write the sample grid step0000010.png into {folder}: the disk is full" in str(caught.value)
    assert list(folder.iterdir()) == []


def test_old_temp_files_in_a_separate_cache_dir_are_removed_at_start(training, sdxl_models, helpers, tiny_models,
                                                                    tmp_path):
    """A run killed while it wrote a feature-cache entry left <entry>.<pid>.tmp in --cache-dir for ever (only the
    output folder and states/ were cleaned). Measures, after a run with a separate --cache-dir: a temp file of a
    dead process older than an hour is gone; one of a dead process written a minute ago (maybe another machine's
    run sharing the cache) and one of a running process are left."""
    from nested_attention.training import loop
    from nested_attention.training.session import open_session

    data = helpers.make_data(tmp_path / "data", {"a": 2})
    cache = tmp_path / "cache"
    (cache / "text" / "ab").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        old = cache / "text" / "ab" / f"ab12.safetensors.{dead.pid}.tmp"
        young = cache / "text" / "ab" / f"ab34.safetensors.{dead.pid}.tmp"
        busy = cache / "text" / "ab" / f"ab56.safetensors.{alive.pid}.tmp"
        for path in (old, young, busy):
            path.write_bytes(b"half an entry")
        two_hours_ago = time.time() - 7200
        os.utime(old, (two_hours_ago, two_hours_ago))
        os.utime(busy, (two_hours_ago, two_hours_ago))
        loop.train(open_session(helpers.tiny_config(tiny_models, data, tmp_path / "out", max_steps=1, cache=True,
                                                    cache_dir=str(cache)), models=sdxl_models))
        assert not old.exists() and young.exists() and busy.exists()
    finally:
        alive.kill()
        alive.wait()
