"""A training process SIGKILLed mid-epoch resumes exactly: same weights, same history.

Each case runs three `train` processes: one uninterrupted, one that is SIGKILLed in the
middle of epoch 1 (right after its backup of step `KILL_STEP`), and the same command again,
which resumes from that backup. On CPU the kernels are deterministic for a fixed thread
count, so the resumed run must end with bitwise-equal weights (tolerance 0) and the same
per-epoch losses and validation metrics as the uninterrupted one.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

STEPS = 5
KILL_STEP = 2  # inside epoch 1: optimizer step STEPS + KILL_STEP

#: `train(**json)`; with KERASTP_TEST_HANG_AT=<optimizer step>, after that step's backup the
#: process writes a marker and waits to be killed.
SCRIPT = """
import json, os, sys, time
import keras
from kerastp import training

class HangAt(keras.callbacks.Callback):
    def __init__(self, step, marker):
        super().__init__()
        self.step, self.marker = step, marker

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            open(self.marker, "w").close()
            time.sleep(600)

hang = os.environ.get("KERASTP_TEST_HANG_AT")
callbacks = [HangAt(int(hang), os.environ["KERASTP_TEST_MARKER"])] if hang else []
training.train(callbacks=callbacks, **json.loads(sys.argv[1]))
"""

CASES = {
    # Deterministic forward pass.
    "stlight_tiny": {"overrides": {"hidden_dim": 16, "depth": 2}},
    # Stochastic: scheduled sampling draws from a SeedGenerator every step; its schedule
    # follows optimizer.iterations.
    "predrnn_tiny": {},
}


def _env(tmp_path, **extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_HOME=str(tmp_path / "keras_home"))
    env.update(extra)
    return env


def _run(config, tmp_path, timeout=300):
    subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(config)],
        env=_env(tmp_path),
        cwd=tmp_path,
        check=True,
        timeout=timeout,
        capture_output=True,
    )


def _history(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _weights(run_dir):
    from kerastp import saving

    model = saving.load_model(run_dir / "model.keras")
    return model.get_weights(), int(model.optimizer.iterations.numpy())


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(CASES))
def test_sigkilled_run_resumes_to_the_same_weights(preset, tmp_path):
    from kerastp.checkpointing import read_backup

    config = {
        "preset": preset,
        "epochs": 3,
        "steps_per_epoch": STEPS,
        "batch_size": 2,
        "val_sequences": 4,
        "eval_sequences": 0,
        "backup_every": 1,
        "seed": 7,
        "verbose": 0,
        **CASES[preset],
    }
    straight = tmp_path / "straight"
    _run({**config, "run_dir": str(straight)}, tmp_path)

    resumed = tmp_path / "resumed"
    marker = tmp_path / "hanging"
    command = [sys.executable, "-c", SCRIPT, json.dumps({**config, "run_dir": str(resumed)})]
    env = _env(
        tmp_path,
        KERASTP_TEST_HANG_AT=str(STEPS + KILL_STEP),
        KERASTP_TEST_MARKER=str(marker),
    )
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300
        backup = None
        # Poll the backup directory: the backup of step KILL_STEP of epoch 1 must be there.
        while time.monotonic() < deadline and process.poll() is None:
            if marker.exists():
                backup = read_backup(resumed / "backup")
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert backup is not None, "the run never reached the step to kill it at"
        assert (backup["epoch"], backup["step"]) == (1, KILL_STEP)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (resumed / "model.keras").exists()
    # Epoch 0 was logged; the interrupted epoch 1 was not.
    assert [row["epoch"] for row in _history(resumed)] == ["0"]

    _run({**config, "run_dir": str(resumed)}, tmp_path)  # the same command again

    expected, expected_steps = _weights(straight)
    got, got_steps = _weights(resumed)
    assert got_steps == expected_steps == 3 * STEPS
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise: tolerance 0
    rows_expected, rows_got = _history(straight), _history(resumed)
    assert [row["epoch"] for row in rows_got] == ["0", "1", "2"]
    for row_expected, row_got in zip(rows_expected, rows_got, strict=True):
        for key in row_expected:
            if key != "epoch_seconds":
                assert row_got[key] == row_expected[key], (key, row_expected["epoch"])
    assert not (resumed / "backup").exists()
    # No temporary file was left anywhere in the run directory.
    leftovers = [p for p in resumed.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
