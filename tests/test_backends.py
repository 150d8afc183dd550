"""kerastp on Keras' JAX backend: every tiny preset trains with `fit`, saves a `.keras` file
that TensorFlow reloads with the same outputs, and the PyDataset stream equals tf.data's.

Each JAX run is a subprocess (Keras picks its backend once per process). Skipped where JAX
is not installed (`pip install 'kerastp[jax]'`)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kerastp import registry, runs
from kerastp.lite import LiteForecaster

pytest.importorskip("jax")

TINY = registry.list_presets(tiny=True)


#: Prepended to a script, TensorFlow (and tensorflow-datasets) cannot be imported by it, as in
#: a venv with the `jax` extra only: a `None` in `sys.modules` makes `import tensorflow` raise
#: ImportError and `importlib.util.find_spec("tensorflow")` return None.
WITHOUT_TENSORFLOW = (
    "import sys\n"
    "for _name in ('tensorflow', 'tensorflow_datasets'):\n"
    "    sys.modules[_name] = None\n"
)


def run_jax(script, timeout=600, env_extra=None, tensorflow=False):
    """Runs `script` in a fresh process on Keras' JAX backend (CPU); returns the JSON of its
    last line. Without `tensorflow`, the process cannot import TensorFlow."""
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", **(env_extra or {}))
    script = textwrap.dedent(script)
    if not tensorflow:
        script = WITHOUT_TENSORFLOW + script
    done = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    """One JAX process that cannot import TensorFlow: each tiny preset fitted one step and
    saved, with its probe output."""
    out = tmp_path_factory.mktemp("jax_runs")
    return run_jax(
        f"""
        import json, numpy as np, keras, kerastp
        from kerastp import registry
        assert keras.backend.backend() == "jax"
        result = {{}}
        for name in {TINY!r}:
            model = registry.build_model(name)
            shape = (2, model.input_frames, *model.frame_shape)
            rng = np.random.default_rng(0)
            past = rng.random(shape, dtype=np.float32)
            future = rng.random((2, model.output_frames, *model.frame_shape), dtype=np.float32)
            model.compile(learning_rate=1e-3, total_steps=10)
            history = model.fit(past, future, batch_size=2, epochs=1, verbose=0)
            path = "{out}/" + name + ".keras"
            model.save(path)
            np.save(path + ".probe.npy", past)
            np.save(path + ".out.npy", np.asarray(model.predict(past, verbose=0)))
            result[name] = {{"loss": float(history.history["loss"][0]), "path": path}}
        print(json.dumps(result))
        """
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_fits_on_jax_and_reloads_on_tensorflow(jax_runs, name):
    import kerastp

    run = jax_runs[name]
    assert np.isfinite(run["loss"])
    model = kerastp.load_model(run["path"])
    past = np.load(run["path"] + ".probe.npy")
    expected = np.load(run["path"] + ".out.npy")
    # 1e-5 of the output's scale: float32 sums in another order (XLA vs oneDNN) differ by
    # a few ulps of the largest values (USTEP's reach 2.6: 1.1e-5 measured).
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(model.predict(past, verbose=0), expected, atol=1e-5 * scale,
                               rtol=0)


def test_pydataset_stream_equals_tf_data_stream():
    from kerastp.data.moving_mnist import moving_mnist_dataset
    from kerastp.data.pydatasets import MovingMNISTPyDataset

    kwargs = dict(batch_size=24, num_sequences=300, seed=5)
    tf_stream = moving_mnist_dataset("procedural", **kwargs, initial_epoch=2)
    py_stream = MovingMNISTPyDataset("procedural", **kwargs, initial_epoch=2)
    for _ in range(2):  # two epochs: both move on to the next data epoch
        tf_batches = list(tf_stream.as_numpy_iterator())
        assert len(tf_batches) == len(py_stream) == 12
        for i, (past, future) in enumerate(tf_batches):
            py_past, py_future = py_stream[i]
            np.testing.assert_array_equal(py_past, past)
            np.testing.assert_array_equal(py_future, future)
        py_stream.on_epoch_end()


def test_pydataset_checks_its_arguments():
    from kerastp.data.pydatasets import MovingMNISTPyDataset

    with pytest.raises(ValueError, match="split"):
        MovingMNISTPyDataset("procedural", split="dev")
    with pytest.raises(ValueError, match="num_sequences=4 is smaller than batch_size=8"):
        MovingMNISTPyDataset("procedural", batch_size=8, num_sequences=4)
    with pytest.raises(IndexError):
        MovingMNISTPyDataset("procedural", batch_size=2, num_sequences=4)[2]


# Slow: `kerastp train --backend jax` (default suite) trains from the same stream already.
@pytest.mark.slow
def test_stlight_trains_on_jax_with_the_pydataset_stream():
    result = run_jax(
        """
        import json, keras
        from kerastp import registry
        from kerastp.data.pydatasets import MovingMNISTPyDataset
        from kerastp.layers.depthwise import set_depthwise_implementation
        losses = {}
        for implementation in ("keras", "shift"):
            set_depthwise_implementation(implementation)
            keras.utils.set_random_seed(0)
            model = registry.build_model("stlight_tiny")
            model.compile(learning_rate=3e-3, total_steps=6)
            stream = MovingMNISTPyDataset("procedural", batch_size=4, num_sequences=12)
            history = model.fit(stream, epochs=2, verbose=0)
            losses[implementation] = history.history["loss"]
        print(json.dumps(losses))
        """
    )
    keras_losses, shift_losses = result["keras"], result["shift"]
    assert keras_losses[1] < keras_losses[0]
    # The same seeded model and data: both depth-wise forms train alike.
    np.testing.assert_allclose(shift_losses, keras_losses, rtol=1e-3)


def test_unsupported_backend_is_named():
    env = dict(os.environ, KERAS_BACKEND="numpy")
    done = subprocess.run(
        [sys.executable, "-c", "from kerastp.backend import require_keras; require_keras()"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode != 0
    assert "tensorflow, jax, torch" in done.stderr and "'numpy'" in done.stderr


@pytest.mark.slow
def test_gpu_race_script_runs_on_cpu_jax(tmp_path):
    """benchmarks/gpu.py end to end at toy sizes: every phase, and a report rebuilt from a
    cut-off call's records (no PyTorch needed: its rows say skipped)."""
    import json as json_module
    from pathlib import Path

    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "mm"
    data.mkdir()
    for name, count in (("mm_train", 40), ("mm_test", 6)):
        np.save(data / f"{name}.npy", (rng.random((count, 20, 16, 16, 1)) * 255).astype("uint8"))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    common = [sys.executable, str(script), "--presets", "stlight_tiny", "--size", "16",
              "--override", '{"hidden_dim": 16, "depth": 2}', "--batches", "16",
              "--dtypes", "float32", "--steps", "4", "--micro-reps", "2",
              "--micro-kernels", "3:1,7:3", "--torch-script", str(tmp_path / "missing.py")]
    # Batch 16: the quality race sizes kerastp's schedule by its batch-16 float32 rate.
    first = subprocess.run(
        [*common, "--out", str(tmp_path / "a"), "--phases", "torch,micro,kerastp"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run(
        [*common, "--out", str(tmp_path / "b"), "--phases", "quality,baseline",
         "--others", "simvp_tiny", "--baseline-batches", "", "--quality-data", str(data),
         "--quality-seconds", "2", "--merge", str(tmp_path / "a" / "gpu.jsonl")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    records = json_module.loads((tmp_path / "b" / "race.json").read_text())
    phases = {r["phase"] for r in records}
    assert {"torch", "env", "micro", "kerastp", "quality", "baseline"} <= phases
    speeds = [r for r in records if r["phase"] in ("kerastp", "baseline")]
    assert [(r["preset"], r["impl"]) for r in speeds] == [
        ("stlight_tiny", "auto"), ("simvp_tiny", "auto"), ("simvp_tiny", "keras")]
    assert all(r["train_samples_per_s"] > 0 and r["first_steps_s"] > 0 for r in speeds)
    quality = [r for r in records if r["phase"] == "quality" and "mse" in r]
    assert len(quality) == 1 and quality[0]["test_sequences"] == 6
    assert 0 < quality[0]["mse"] < 16 * 16 * 10  # per-frame SSE of frames in [0, 1]
    micro = [r for r in records if r["phase"] == "micro"]
    assert {(r["impl"], r["kernel"]) for r in micro} == {
        (i, k) for i in ("keras", "shift") for k in (3, 7)}
    markdown = (tmp_path / "b" / "race.md").read_text()
    assert "| stlight_tiny | 16 | float32 | auto |" in markdown
    assert "| kerastp | " in markdown  # the quality row
    assert "Not measured:" in markdown and "no reference script" in markdown


@pytest.mark.slow
def test_data_parallel_on_two_jax_devices_matches_one_device():
    """keras.distribution.DataParallel over two (virtual CPU) devices trains the same weights
    as one device: the global batch's statistics and gradients are the same numbers."""
    result = run_jax(
        """
        import json, keras, numpy as np
        import jax
        from kerastp import registry
        assert len(jax.devices()) == 2, jax.devices()

        def train(distribution):
            keras.distribution.set_distribution(distribution)
            keras.utils.set_random_seed(0)
            model = registry.build_model("stlight_tiny")
            # SGD: Adam divides by the root of tiny second moments, which turns reduction-order
            # rounding (1e-8) into visible weight differences; the data parallelism is the same.
            model.compile(optimizer=keras.optimizers.SGD(0.05))
            rng = np.random.default_rng(0)
            past = rng.random((16, 10, 64, 64, 1), dtype=np.float32)
            future = rng.random((16, 10, 64, 64, 1), dtype=np.float32)
            model.fit(past, future, batch_size=8, epochs=2, shuffle=False, verbose=0)
            return [np.asarray(w) for w in model.weights]

        one = train(None)
        two = train(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
        diffs = [float(np.max(np.abs(a - b))) for a, b in zip(one, two)]
        moved = max(float(np.max(np.abs(a))) for a in one)
        print(json.dumps({"max_diff": max(diffs), "n": len(diffs), "moved": moved}))
        """,
        env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert result["n"] > 10 and result["moved"] > 0
    assert result["max_diff"] <= 1e-6


@pytest.mark.slow
def test_tensorflow_exports_a_jax_trained_model(jax_runs, tmp_path):
    from kerastp.export import export_artifacts

    written = export_artifacts(jax_runs["stlight_tiny"]["path"], formats=("saved_model", "tflite"),
                               saved_model_dir=str(tmp_path), tflite_dir=str(tmp_path))
    for kind in ("saved_model", "tflite"):
        path, sidecar = written[kind]
        assert path.exists() and sidecar["parity"]["passed"], kind
        assert sidecar["parity"]["max_abs_error"] <= 1e-4, kind


def test_pydataset_skips_the_batches_a_resumed_epoch_took():
    from kerastp.data.moving_mnist import moving_mnist_dataset
    from kerastp.data.pydatasets import MovingMNISTPyDataset

    tf_batches = list(moving_mnist_dataset("procedural", batch_size=8, num_sequences=40,
                                           seed=2).as_numpy_iterator())
    py = MovingMNISTPyDataset("procedural", batch_size=8, num_sequences=40, seed=2)
    py.skip_batches(3)
    assert len(py) == 2
    np.testing.assert_array_equal(py[0][0], tf_batches[3][0])
    np.testing.assert_array_equal(py[1][1], tf_batches[4][1])
    py.on_epoch_end()
    assert len(py) == 5  # the next pass is whole again


def test_windows_pydataset_visits_every_window_once_per_pass_in_a_seeded_order():
    from kerastp.data.pydatasets import WindowsPyDataset

    past = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1, 1)
    future = -past
    stream = WindowsPyDataset(past, future, batch_size=3, seed=4)
    assert len(stream) == 3
    first = np.concatenate([stream[i][0] for i in range(3)]).ravel()
    assert len(set(first)) == 9 and set(first) <= set(range(10))
    np.testing.assert_array_equal(stream[0][1], -stream[0][0])  # pairs stay together
    again = WindowsPyDataset(past, future, batch_size=3, seed=4)
    np.testing.assert_array_equal(again[1][0], stream[1][0])
    stream.on_epoch_end()
    second = np.concatenate([stream[i][0] for i in range(3)]).ravel()
    assert not np.array_equal(first, second)  # reshuffled
    validation = WindowsPyDataset(past, future, batch_size=4, shuffle=False,
                                  drop_remainder=False)
    assert len(validation) == 3 and len(validation[2][0]) == 2
    np.testing.assert_array_equal(
        np.concatenate([validation[i][0] for i in range(3)]).ravel(), np.arange(10)
    )
    with pytest.raises(ValueError, match="no batch"):
        WindowsPyDataset(past, future, batch_size=11)


def test_windows_from_frames_slice_the_same_windows_as_arrays_of_them():
    from kerastp.data.pydatasets import WindowsPyDataset

    frames = np.arange(30, dtype=np.float32).reshape(30, 1, 1, 1)
    starts = np.array([0, 3, 7, 12, 20])
    index = starts[:, None] + np.arange(6)
    whole = WindowsPyDataset(frames[index][:, :2], frames[index][:, 2:], 2, seed=5)
    sliced = WindowsPyDataset.from_frames(frames, starts, 2, 4, 2, seed=5)
    for i in range(len(whole)):
        for a, b in zip(whole[i], sliced[i], strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="run past"):
        WindowsPyDataset.from_frames(frames, [25], 2, 4, 1)


def _stream_digest(name, config):
    """Batches 0 and 2 of epochs 0 and 1 of a source's training stream, and a resumed
    stream's epoch 1 (first_epoch=1), rounded to 1e-5 as nested lists."""
    from kerastp import registry
    from kerastp.data.sources import get_source

    source = get_source(name).from_config(config)
    preset = "stlight_tiny"
    overrides = source.model_overrides(preset) if hasattr(source, "model_overrides") else {}
    if name == "arrays":
        overrides = dict(zip(("height", "width", "channels"), source.frame_shape(), strict=True))
    model = registry.build_model(preset, **overrides)
    source.prepare(model)
    stream, steps = source.training_stream(model, 4, None)
    out = []
    for _ in range(2):
        out.append([[float(np.round(v.sum(), 5)) for v in stream[i]] for i in (0, 2)])
        stream.on_epoch_end()
    resumed, _ = source.training_stream(model, 4, None, first_epoch=1)
    out.append([[float(np.round(v.sum(), 5)) for v in resumed[i]] for i in (0, 2)])
    return {"steps": steps, "batches": out}


def test_windowed_training_streams_are_the_same_on_tensorflow_and_jax(tmp_path, radar_dir):
    """Radar events and the user's arrays: one seeded stream, batch for batch, on both
    backends; a resumed run's stream continues at its epoch."""
    rng = np.random.default_rng(0)
    frames = tmp_path / "frames.npy"
    np.save(frames, rng.random((6, 24, 16, 16, 1), dtype=np.float32))
    configs = {"arrays": {"data_path": str(frames), "seed": 3},
               "radar": {"seed": 2, "augment": "dihedral"}}
    ours = {name: _stream_digest(name, config) for name, config in configs.items()}
    for digest in ours.values():
        assert digest["batches"][0] != digest["batches"][1]  # reshuffled each pass
        assert digest["batches"][2] == digest["batches"][1]  # resumed at epoch 1
    theirs = run_jax(
        f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_backends import _stream_digest
        print(json.dumps({{n: _stream_digest(n, c) for n, c in {configs!r}.items()}}))
        """
    )
    assert theirs == ours


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("jax", marks=pytest.mark.slow),  # ~100 s with its export: slow CI step
        pytest.param("torch", marks=[pytest.mark.slow, pytest.mark.torch_backend]),
    ],
)
def test_cli_trains_on_another_backend_and_tensorflow_reloads_the_run(tmp_path, backend):
    import importlib.util

    from kerastp import saving

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("KERAS_BACKEND", None)
    # On JAX, `kerastp train` in a process that cannot import TensorFlow (the `jax` extra).
    cli = [sys.executable, "-c", WITHOUT_TENSORFLOW + "from kerastp.cli import main\n"
           "sys.exit(main(sys.argv[1:]))"] if backend == "jax" else [
        sys.executable, "-m", "kerastp"]  # fmt: skip
    done = subprocess.run(
        [*cli, "train", "--backend", backend, "--preset",
         "stlight_tiny", "--epochs", "2", "--steps-per-epoch", "3", "--eval-sequences", "8",
         "--run-dir", str(tmp_path / "run"), "--verbose", "0"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backend"] == backend
    history = (tmp_path / "run" / "history.csv").read_text().strip().splitlines()
    assert len(history) == 3  # header + two epochs
    model = saving.load_model(tmp_path / "run")
    probe = np.random.default_rng(3).random((1, 10, 64, 64, 1), dtype=np.float32)
    assert model.predict(probe, verbose=0).shape == (1, 10, 64, 64, 1)
    # `kerastp export` runs on TensorFlow even with the training backend still in
    # KERAS_BACKEND (as a user's shell keeps it); the sidecar says which backend trained it.
    done = subprocess.run(
        [sys.executable, "-m", "kerastp", "export", "--model", str(tmp_path / "run"),
         "--format", "tflite", "--tflite-dir", str(tmp_path / "tfl")],
        capture_output=True, text=True, env=dict(env, KERAS_BACKEND=backend), timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"runs on TensorFlow, the one backend it exists on; KERAS_BACKEND='{backend}'" in (
        done.stderr
    )
    sidecar = json.loads(runs.sidecar_path(tmp_path / "tfl" / "stlight_tiny.tflite").read_text())
    assert sidecar["training_backend"] == backend and sidecar["parity"]["passed"]
    np.testing.assert_allclose(
        LiteForecaster(tmp_path / "tfl" / "stlight_tiny.tflite").predict(probe),
        model.predict(probe, verbose=0), atol=1e-4,
    )


def test_tf_distribute_on_another_backend_is_refused_by_name(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-m", "kerastp", "train", "--backend", "jax", "--strategy",
         "mirrored", "--epochs", "1", "--steps-per-epoch", "2", "--run-dir",
         str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 2
    assert "needs the TensorFlow backend" in done.stderr and "DataParallel" in done.stderr
    assert not (tmp_path / "run").exists()


def test_export_from_a_process_on_another_backend_says_how_to_export(tmp_path):
    """In a process whose Keras already runs on JAX, `kerastp export` cannot switch backends:
    it exits with status 2 and says how to export (save, then `kerastp export`, which starts
    on TensorFlow), and writes nothing."""
    code = (
        "import keras, sys; from kerastp import cli; "
        f"sys.exit(cli.main(['export', '--model', 'm.keras', '--tflite-dir', {str(tmp_path)!r},"
        f" '--saved-model-dir', {str(tmp_path)!r}]))"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Keras runs on 'jax' here" in done.stderr
    assert "kerastp export --model model.keras" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_backend_whose_package_is_missing_names_the_extra(tmp_path):
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed here")
    done = subprocess.run(
        [sys.executable, "-m", "kerastp", "train", "--backend", "torch", "--run-dir",
         str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2
    assert "'torch' package" in done.stderr and "kerastp[torch]" in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.torch_backend
def test_tiny_presets_fit_on_pytorch_and_tensorflow_reloads_them(tmp_path):
    """The PyTorch contract, shorter than JAX's: every tiny preset fits one step on PyTorch
    and its `.keras` file gives TensorFlow the same forecast (1e-4: PyTorch's CPU kernels
    round differently; USTEP's 10-step attention rollout differs by 2.2e-5 here)."""
    pytest.importorskip("torch")
    from kerastp import saving

    env = dict(os.environ, KERAS_BACKEND="torch")
    script = textwrap.dedent(
        f"""
        import json, numpy as np, keras
        from kerastp import registry
        assert keras.backend.backend() == "torch"
        losses = {{}}
        for name in {TINY!r}:
            model = registry.build_model(name)
            rng = np.random.default_rng(0)
            past = rng.random((2, model.input_frames, *model.frame_shape), dtype=np.float32)
            future = rng.random((2, model.output_frames, *model.frame_shape), dtype=np.float32)
            model.compile(learning_rate=1e-3, total_steps=10)
            history = model.fit(past, future, batch_size=2, epochs=1, verbose=0)
            losses[name] = float(history.history["loss"][0])
            path = "{tmp_path}/" + name + ".keras"
            model.save(path)
            np.save(path + ".probe.npy", past)
            np.save(path + ".out.npy", np.asarray(model.predict(past, verbose=0)))
        print(json.dumps(losses))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    losses = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(losses) == set(TINY) and all(np.isfinite(v) for v in losses.values())
    for name in TINY:
        path = tmp_path / f"{name}.keras"
        model = saving.load_model(path)
        ours = np.asarray(model.predict(np.load(f"{path}.probe.npy"), verbose=0))
        np.testing.assert_allclose(ours, np.load(f"{path}.out.npy"), atol=1e-4, err_msg=name)


SCHEDULED_SAMPLING = """
import json, os, sys, numpy as np
import keras
from kerastp import registry
rng = np.random.default_rng(0)
past = rng.random((4, 10, 64, 64, 1), dtype=np.float32)
future = rng.random((4, 10, 64, 64, 1), dtype=np.float32)
out = {}
# SGD at learning rate 0 keeps the weights: each step's loss shows which decoder inputs it
# used. stop_iter=2: steps 0 and 1 are teacher-forced (eta ~ 1), step 2 on runs free.
for name, overrides in (("scheduled", {"sampling_stop_iter": 2}),
                        ("free", {"scheduled_sampling": False})):
    model = registry.build_model("convlstm_tiny", **overrides)
    model.load_weights(sys.argv[1])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", metrics=[])
    history = model.fit(past, future, batch_size=4, epochs=3, verbose=0, shuffle=False)
    out[name] = history.history["loss"]
    out[name + "_steps"] = int(np.asarray(model.sampling_seed.state.value)[1])
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", pytest.param("torch", marks=pytest.mark.torch_backend)])
def test_scheduled_sampling_follows_the_steps_on_every_backend(tmp_path, backend):
    """ConvLSTM's scheduled sampling (teacher inputs with probability eta, eta by optimizer
    step) gives the same losses on JAX and PyTorch as on TensorFlow, without a train step."""
    import importlib.util

    import keras

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    keras.utils.set_random_seed(0)
    weights = tmp_path / "init.weights.h5"
    registry.build_model("convlstm_tiny").save_weights(weights)
    results = {}
    for name in ("tensorflow", backend):
        env = dict(os.environ, KERAS_BACKEND=name, JAX_PLATFORMS="cpu")
        done = subprocess.run([sys.executable, "-c", SCHEDULED_SAMPLING, str(weights)],
                              capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, reference = results[backend], results["tensorflow"]
    np.testing.assert_allclose(ours["scheduled"], reference["scheduled"], rtol=1e-5)
    np.testing.assert_allclose(ours["free"], reference["free"], rtol=1e-5)
    teacher, _, after_stop = ours["scheduled"]
    assert abs(teacher - ours["free"][0]) > 1e-4  # teacher inputs change the loss ...
    assert after_stop == pytest.approx(ours["free"][2], rel=1e-6)  # ... until stop_iter
    assert ours["scheduled_steps"] == 3 and ours["free_steps"] == 0
