"""Training runs: run directory, resume after interruption, evaluation, library use."""

import csv
import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from kerastp import saving, training
from kerastp.evaluation.evaluate import evaluate, summary

SMALL = {
    "preset": "stlight_tiny",
    "epochs": 2,
    "steps_per_epoch": 3,
    "batch_size": 4,
    "val_sequences": 8,
    "eval_sequences": 0,
    "verbose": 0,
    "overrides": {"hidden_dim": 16, "depth": 2},
}


class _Interrupt(Exception):
    pass


class _StopAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupt(f"interrupted at epoch {epoch}")


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def test_run_directory_contents(tmp_path):
    result = training.train(**{**SMALL, "eval_sequences": 16}, run_dir=str(tmp_path / "run"))
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "stlight_tiny"
    assert config["model_config"]["hidden_dim"] == 16
    assert config["learning_rate"] == 3e-3 and config["schedule"] == "one_cycle"
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"loss", "val_loss", "frame_mse", "val_frame_mse", "epoch_seconds"} <= set(rows[0])
    assert (run / "checkpoints" / "best.keras").is_file()
    assert (run / "checkpoints" / "last.keras").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_sequences"] == 16 and np.isfinite(metrics["mse"])
    assert len(metrics["mse_per_frame"]) == 10
    for key in ("mse", "mae", "ssim", "psnr"):
        assert metrics[key] == pytest.approx(result["metrics"][key])
    reloaded = saving.load_model(run)
    assert reloaded.optimizer.iterations.numpy() == 6
    past = np.random.default_rng(0).random((2, 10, 64, 64, 1), dtype=np.float32)
    np.testing.assert_allclose(
        reloaded.predict(past, verbose=0), result["model"].predict(past, verbose=0), atol=1e-6
    )


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_trained_run):
    """Interrupted after its first epoch, moved to another directory and resumed, a run ends
    with the weights of the session's uninterrupted run of the same settings and seed."""
    kwargs = {**tiny_trained_run.kwargs, "eval_sequences": 0}  # scoring is not compared
    with pytest.raises(_Interrupt):
        training.train(**kwargs, run_dir=str(tmp_path / "first"), callbacks=[_StopAtEpoch(1)])
    assert (tmp_path / "first" / "backup").is_dir()
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(tmp_path / "first", moved)
    resumed = training.train(**kwargs, run_dir=str(moved))
    assert resumed["model"].optimizer.iterations.numpy() == 6
    # Only the second epoch ran in the resumed call.
    assert len(resumed["history"]["loss"]) == 1
    straight = tiny_trained_run.result["model"]
    for a, b in zip(_weights(straight), _weights(resumed["model"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with open(moved / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]


def test_same_run_dir_with_other_settings_is_refused(tmp_path, tiny_trained_run):
    """A run directory moved elsewhere (here: copied) is the same run; another batch size is
    not, and only it is named."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_trained_run.run_dir, run_dir)
    kwargs = tiny_trained_run.kwargs
    with pytest.raises(ValueError, match=r"\(batch_size differ\)"):
        training.train(**{**kwargs, "batch_size": 2}, run_dir=str(run_dir))
    # Rerunning a finished run with the same settings trains it again with a fresh history.
    before = (run_dir / "history.csv").stat().st_mtime_ns
    training.train(**kwargs, run_dir=str(run_dir))
    assert (run_dir / "history.csv").stat().st_mtime_ns > before
    with open(run_dir / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]  # not appended


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"data": "cifar"}, "`data` must be one of"),
        ({"schedule": "step"}, "`schedule`"),
        ({"epochs": 0}, "`epochs` must be a positive integer"),
        ({"eval_sequences": 20000}, "eval_sequences"),
        ({"preset": "nope"}, "Unknown preset 'nope'. Valid presets: .*stlight_tiny"),
    ],
)
def test_bad_training_settings(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        training.train(**{**SMALL, **kwargs}, run_dir=str(tmp_path / "run"))


def test_evaluate_from_a_file_equals_evaluate_from_the_model(tmp_path):
    result = training.train(**{**SMALL, "epochs": 1}, run_dir=str(tmp_path / "run"))
    scores = evaluate(tmp_path / "run", num_sequences=8)
    assert scores["n_sequences"] == 8
    assert set(scores) >= {"mse", "mae", "ssim", "psnr", "mse_per_frame"}
    model = result["model"]
    # The same numbers from the model object and from the saved file.
    assert evaluate(model, num_sequences=8)["mse"] == pytest.approx(scores["mse"])
    with pytest.raises(FileNotFoundError, match="No kerastp model"):
        evaluate(tmp_path / "absent.keras")


def test_mnist_data_source_uses_real_digits(shared_mnist, tmp_path):
    result = training.train(
        **{**SMALL, "epochs": 1, "eval_sequences": 8},
        data="mnist",
        mnist_path=str(shared_mnist),
        run_dir=str(tmp_path / "run"),
    )
    assert result["metrics"]["data"] == "mnist"
    assert np.isfinite(result["metrics"]["mse"])


def test_readme_library_example_runs(tmp_path, monkeypatch):
    """The README's library example, executed as written."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(r"<!-- library-example -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "README lost its library example"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(match.group(1), "README.md", "exec"), namespace)
    assert namespace["forecast"].shape == (8, 10, 64, 64, 1)
    assert (tmp_path / "stlight_tiny.keras").is_file()
    assert (tmp_path / "stlight_tiny.tflite").is_file()


@pytest.mark.slow
def test_a_fresh_process_loads_every_model(tmp_path):
    """`kerastp.load_model` registers every kerastp class itself (models, optimizer, losses).
    Slow (a fresh TensorFlow process and every tiny preset): the default suite loads one
    model in a fresh process (`test_serialization.py`) and checks the registry's list."""
    import subprocess
    import sys

    from kerastp import registry

    expected = {}
    for preset in registry.list_presets(tiny=True):
        model = registry.build_model(preset)
        model.compile(total_steps=10)
        path = tmp_path / f"{preset}.keras"
        model.save(path)
        expected[str(path)] = type(model).__name__
    script = (
        "import json, sys\n"
        "from kerastp import load_model\n"
        "print(json.dumps({p: type(load_model(p)).__name__ for p in sys.argv[1:]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *expected],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


@pytest.mark.slow
def test_radar_training_scores_model_and_persistence(tmp_path):
    from kerastp.data import radar

    result = training.train(
        preset="stlight_tiny",
        data="radar",
        epochs=1,
        steps_per_epoch=2,
        batch_size=4,
        verbose=0,
        run_dir=str(tmp_path / "run"),
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    frames = {k: config["model_config"][k] for k in ("input_frames", "output_frames", "height")}
    assert frames == {"input_frames": 6, "output_frames": 12, "height": 64}
    metrics = result["metrics"]
    assert metrics["events"] == sorted(radar.VALIDATION_EVENTS)
    past, future = radar.radar_arrays("val")
    assert metrics["windows"] == len(past) == 16
    # Persistence, scored independently: the last input frame repeated, per-pixel MSE.
    persistence = np.mean((past[:, -1:] - future) ** 2)
    assert metrics["persistence"]["mse"]["total"] == pytest.approx(persistence, rel=1e-5)
    rows = summary(metrics)
    assert set(rows) == {"model", "persistence"}
    for row in rows.values():
        assert {"mse", "mse_mm_h", "csi_1.0", "pod_1.0", "far_1.0", "fss"} <= set(row)
        assert 0.0 <= row["csi_1.0"] <= 1.0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["windows"] == 16
    # Integer exports are judged on the run's own held-out data: the 16 validation windows.
    from kerastp import export

    written = export.export_artifacts(
        tmp_path / "run",
        formats=("tflite",),
        quantize="dynamic",
        tflite_dir=tmp_path / "tflite",
        max_metric_increase=10.0,
    )
    sidecar = written["tflite"][1]
    assert sidecar["parity"]["held_out_sequences"] == 16
    assert sidecar["data_scale"]["name"] == "radar_log_rain_rate"
    # Forecasts of a radar model come back in mm/h from mm/h inputs.
    from kerastp import visualize

    rain = radar.to_rain_rate(past[3])
    np.save(tmp_path / "rain.npy", rain)
    out, _ = visualize.predict_to_pictures(
        tmp_path / "run", tmp_path / "forecast.npy", inputs=tmp_path / "rain.npy"
    )
    expected = radar.to_rain_rate(result["model"].predict(past[3:4], verbose=0)[0], clip=True)
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="radar data 64x64"):
        training.train(
            preset="stlight_tiny",
            data="radar",
            overrides={"height": 32, "width": 32},
            run_dir=str(tmp_path / "other"),
        )
    with pytest.raises(ValueError, match="radar_resolution"):
        training.train(preset="stlight_tiny", data="radar", radar_resolution=32)


def test_backup_leaves_batch_hooks_to_keras_unless_it_saves_within_epochs(tmp_path):
    """A batch hook makes Keras run every batch callback in step with training: the backup
    keeps one only for mid-epoch backups or the first steps of a mid-epoch resume."""
    from kerastp.checkpointing import TrainingBackup

    default = keras.callbacks.Callback.on_train_batch_end
    own = TrainingBackup.on_train_batch_end

    def hook(**kwargs):
        return TrainingBackup(tmp_path, 10, **kwargs).on_train_batch_end.__func__

    assert hook() is default
    assert hook(resume={"epoch": 2, "step": 0, "best": []}) is default
    assert hook(save_every=3) is own
    resume = {"epoch": 1, "step": 4, "best": [], "counts": {"metrics": 0}}
    backup = TrainingBackup(tmp_path, 10, resume=resume)
    assert backup.on_train_batch_end.__func__ is own
    # Once the interrupted epoch's metrics are merged, the hook goes.
    toy = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    toy.compile(optimizer="sgd", loss="mse")
    backup.set_model(toy)
    backup._arrays = {}
    backup._merge_metrics()
    assert backup.on_train_batch_end.__func__ is default


def test_moving_mnist_training_leaves_glibc_malloc_alone(tmp_path):
    """`Dataset.from_generator` makes TensorFlow pin glibc's mmap threshold at 128 KiB for the
    whole process, which costs every later training step thousands of page faults; kerastp's
    Moving MNIST stream must not build one."""
    import tensorflow as tf

    built = []
    original = tf.data.Dataset.from_generator

    def spy(*args, **kwargs):
        built.append(args)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tf.data.Dataset, "from_generator", staticmethod(spy))
        training.train(**{**SMALL, "epochs": 1}, run_dir=str(tmp_path / "run"))
    assert built == []
