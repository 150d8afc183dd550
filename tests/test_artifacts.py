"""Atomic artifact writers and clear errors for corrupted or truncated model files."""

import csv
import os
import shutil
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastp import checkpointing, cli, export, forecasters, registry, runs, saving, training
from kerastp.artifacts import CorruptArtifactError
from kerastp.lite import LiteForecaster

TINY = {"hidden_dim": 8, "depth": 1}


@pytest.fixture(scope="module")
def forecaster():
    """A tiny STLight, compiled (as training leaves it)."""
    keras.utils.set_random_seed(0)
    model = registry.build_model("stlight_tiny", **TINY)
    model.compile(learning_rate=1e-3)
    model.optimizer.build(model.trainable_variables)
    return model


@pytest.fixture(scope="module")
def keras_bytes(forecaster, tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "model.keras"
    forecaster.save(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def tflite_bytes():
    """A valid two-op TFLite flatbuffer with a `serving_default` signature."""

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="frames")])
        def serve(self, frames):
            return {"forecast": frames * 2.0 + 1.0}

    module = Doubler()
    fn = module.serve.get_concrete_function()
    return tf.lite.TFLiteConverter.from_concrete_functions([fn], module).convert()


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory):
    """A small valid SavedModel with a variable and the kerastp signature names."""
    module = tf.Module()
    module.scale = tf.Variable([1.0, 2.0])
    module.serve = tf.function(
        lambda frames: {"forecast": frames * module.scale},
        input_signature=[tf.TensorSpec([None, 2], tf.float32, name="frames")],
    )
    path = tmp_path_factory.mktemp("sm") / "saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


# -- corrupted .keras ---------------------------------------------------------------------


def test_valid_keras_file_loads(keras_bytes, tmp_path, forecaster):
    path = tmp_path / "ok.keras"
    path.write_bytes(keras_bytes)
    model = saving.load_model(path)
    probe = export.probe_batch(forecaster)
    np.testing.assert_allclose(
        model.predict(probe, verbose=0), forecaster.predict(probe, verbose=0)
    )


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: b[: len(b) // 2], "truncated .keras archive"),
        (lambda b: b[:3], "not a .keras zip archive"),
        (lambda b: b"<html>not found</html>" * 20, "not a .keras zip archive"),
        (lambda b: b"", "not a .keras zip archive"),
        (
            lambda b: b[: len(b) // 3] + bytes([b[len(b) // 3] ^ 0xFF]) + b[len(b) // 3 + 1 :],
            "corrupted .keras archive",
        ),
    ],
    ids=["truncated", "tiny", "garbage", "empty", "flipped-byte"],
)
def test_corrupted_keras_file_raises_a_clear_error(keras_bytes, tmp_path, corrupt, message):
    path = tmp_path / "model.keras"
    path.write_bytes(corrupt(keras_bytes))
    with pytest.raises(CorruptArtifactError, match=message) as info:
        saving.load_model(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    # The run-directory form names the same file.
    (tmp_path / "run").mkdir()
    shutil.copy(path, tmp_path / "run" / "model.keras")
    with pytest.raises(CorruptArtifactError, match=message):
        saving.load_model(tmp_path / "run")


def test_zip_without_keras_members_is_refused(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CorruptArtifactError, match="not a .keras model: it lacks metadata.json"):
        saving.load_model(path)


def test_cli_reports_a_corrupted_model_in_one_line(keras_bytes, tmp_path, capsys):
    path = tmp_path / "model.keras"
    path.write_bytes(keras_bytes[:1000])
    status = cli.main(["predict", "--model", str(path), "--out", str(tmp_path / "f.png")])
    err = capsys.readouterr().err
    assert status != 0
    assert err.count("\n") == 1 and "truncated .keras archive" in err and str(path) in err
    assert "Traceback" not in err
    assert not (tmp_path / "f.png").exists()


# -- corrupted .tflite --------------------------------------------------------------------


def test_valid_tflite_runs(tflite_bytes):
    got = LiteForecaster(tflite_bytes).predict(np.ones((3, 4), np.float32))
    np.testing.assert_allclose(got, np.full((3, 4), 3.0))


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: b[: len(b) // 2], "not a valid TFLite model .*truncated or corrupted"),
        (lambda b: b[: len(b) - 16], "not a valid TFLite model .*truncated or corrupted"),
        (lambda b: b"", "too short for a flatbuffer"),
        (lambda b: b"PK\x03\x04" + b"\x00" * 200, "no 'TFL3' flatbuffer identifier"),
    ],
    ids=["half", "tail-cut", "empty", "foreign"],
)
def test_corrupted_tflite_raises_a_clear_error(tflite_bytes, tmp_path, corrupt, message):
    path = tmp_path / "model.tflite"
    path.write_bytes(corrupt(tflite_bytes))
    with pytest.raises(CorruptArtifactError, match=message) as info:
        LiteForecaster(path)
    assert str(path) in str(info.value)


def test_cli_reports_a_corrupted_tflite_in_one_line(tflite_bytes, tmp_path, capsys):
    path = tmp_path / "model.tflite"
    path.write_bytes(tflite_bytes[:100])
    status = cli.main(["bench", str(path), "--runs", "1", "--warmup", "0"])
    err = capsys.readouterr().err
    assert status != 0 and err.count("\n") == 1 and str(path) in err
    assert "Traceback" not in err


# -- corrupted SavedModel -----------------------------------------------------------------


def test_valid_saved_model_runs(saved_model_dir):
    got = forecasters.run_saved_model(saved_model_dir, np.ones((1, 2), np.float32))
    np.testing.assert_allclose(got, [[1.0, 2.0]])


def _graph_garbage(d):
    (d / "saved_model.pb").write_bytes(b"\xff" * 64)


def _graph_truncated(d):
    pb = d / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:100])


def _graph_empty(d):
    (d / "saved_model.pb").write_bytes(b"")


def _variables_missing(d):
    shutil.rmtree(d / "variables")


def _variables_truncated(d):
    for data in (d / "variables").glob("variables.data-*"):
        data.write_bytes(data.read_bytes()[:4])


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_graph_garbage, "corrupted or incomplete SavedModel"),
        (_graph_truncated, "corrupted or incomplete SavedModel"),
        (_graph_empty, "saved_model.pb is empty"),
        (_variables_missing, "variables/variables.index is missing"),
        (_variables_truncated, "corrupted or incomplete SavedModel"),
    ],
    ids=["graph-garbage", "graph-truncated", "graph-empty", "no-variables", "variables-cut"],
)
def test_corrupted_saved_model_raises_a_clear_error(saved_model_dir, tmp_path, corrupt, message):
    from kerastp import bench

    directory = tmp_path / "saved_model"
    shutil.copytree(saved_model_dir, directory)
    corrupt(directory)
    frames = np.ones((1, 2), np.float32)
    for load in (
        lambda: forecasters.run_saved_model(directory, frames),
        lambda: bench.saved_model_forecaster(directory),
        lambda: forecasters.load_forecaster(directory),
    ):
        with pytest.raises(CorruptArtifactError, match=message) as info:
            load()
        assert str(directory) in str(info.value)
        assert len(str(info.value)) < 500


# -- atomic writers -----------------------------------------------------------------------


def test_failed_keras_save_leaves_the_previous_file(forecaster, keras_bytes, tmp_path, monkeypatch):
    path = tmp_path / "last.keras"
    path.write_bytes(keras_bytes)

    def partial_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(keras_bytes[:500])  # half-written, then the "crash"
        raise OSError("No space left on device")

    monkeypatch.setattr(type(forecaster), "save", partial_save)
    with pytest.raises(OSError, match="No space"):
        saving.save_keras(forecaster, path)
    assert path.read_bytes() == keras_bytes
    assert _listing(tmp_path) == ["last.keras"]


def test_keras_save_that_is_not_a_complete_archive_is_not_kept(
    forecaster, keras_bytes, tmp_path, monkeypatch
):
    path = tmp_path / "last.keras"
    path.write_bytes(keras_bytes)

    def truncating_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(keras_bytes[: len(keras_bytes) // 2])  # returns "successfully"

    monkeypatch.setattr(type(forecaster), "save", truncating_save)
    with pytest.raises(CorruptArtifactError, match="truncated"):
        saving.save_keras(forecaster, path)
    assert path.read_bytes() == keras_bytes
    assert _listing(tmp_path) == ["last.keras"]


def test_failed_checkpoint_keeps_the_previous_one_loadable(
    forecaster, keras_bytes, tmp_path, monkeypatch
):
    path = tmp_path / "checkpoints" / "last.keras"
    checkpoint = checkpointing.AtomicCheckpoint(path)
    checkpoint.set_model(forecaster)
    checkpoint.on_epoch_end(0, {"loss": 1.0})
    first = path.read_bytes()
    monkeypatch.setattr(saving, "check_keras_archive", _raise_os_error)  # a crash after writing
    with pytest.raises(OSError):
        checkpoint.on_epoch_end(1, {"loss": 0.5})
    assert path.read_bytes() == first
    assert _listing(path.parent) == ["last.keras"]
    monkeypatch.undo()
    assert isinstance(saving.load_model(path), keras.Model)


def _raise_os_error(*args, **kwargs):
    raise OSError("killed")


def test_best_checkpoint_only_on_improvement(forecaster, tmp_path):
    path = tmp_path / "best.keras"
    checkpoint = checkpointing.AtomicCheckpoint(path, monitor="val_loss")
    checkpoint.set_model(forecaster)
    checkpoint.on_epoch_end(0, {"val_loss": 0.5})
    stamp = path.stat().st_mtime_ns
    checkpoint.on_epoch_end(1, {"val_loss": 0.7})
    checkpoint.on_epoch_end(2, {"val_loss": float("nan")})
    assert path.stat().st_mtime_ns == stamp and checkpoint.best == 0.5
    checkpoint.on_epoch_end(3, {"val_loss": 0.25})
    assert checkpoint.best == 0.25


def test_interrupted_saved_model_export_leaves_the_previous_one(
    forecaster, saved_model_dir, tmp_path, monkeypatch
):
    target = tmp_path / "saved_models" / "m"
    shutil.copytree(saved_model_dir, target)
    before = {p.name: p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def crash_midway(model, directory, depthwise_form):
        os.makedirs(directory / "variables", exist_ok=True)
        (directory / "saved_model.pb").write_bytes(b"partial")
        raise KeyboardInterrupt  # the process is stopped midway

    monkeypatch.setattr(export, "_write_saved_model", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        export.export_saved_model(forecaster, target)
    assert {p.name: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert _listing(target.parent) == ["m"]


def test_failed_tflite_export_leaves_artifact_and_sidecar(forecaster, tmp_path, monkeypatch):
    target = tmp_path / "tflite" / "m.tflite"
    target.parent.mkdir()
    target.write_bytes(b"previous model")
    runs.sidecar_path(target).write_text('{"previous": true}\n')
    monkeypatch.setattr(export, "_write_saved_model", lambda model, d, form: d.mkdir())

    def failing_converter(*args, **kwargs):
        raise RuntimeError("converter failed midway")

    monkeypatch.setattr(export, "convert_to_tflite", failing_converter)
    with pytest.raises(RuntimeError, match="midway"):
        export.export_tflite(forecaster, target)
    assert target.read_bytes() == b"previous model"
    assert runs.sidecar_path(target).read_text() == '{"previous": true}\n'
    assert _listing(target.parent) == ["m.tflite", "m.tflite.json"]


def test_keras_export_failing_verification_writes_nothing(forecaster, tmp_path, monkeypatch):
    target = tmp_path / "m.keras"
    target.write_bytes(b"previous")
    real = export._reference
    calls = []

    def drifting(model, probe):
        calls.append(1)
        return real(model, probe) + (0.0 if len(calls) == 1 else 1.0)

    monkeypatch.setattr(export, "_reference", drifting)
    monkeypatch.setattr(export.keras.saving, "load_model", lambda path: _Shifted(forecaster))
    with pytest.raises(export.ExportVerificationError):
        export.export_keras(forecaster, target)
    assert target.read_bytes() == b"previous"
    assert _listing(tmp_path) == ["m.keras"]


class _Shifted:
    """A reloaded model whose forecasts differ from the original's."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, training=False):
        return self.model(x, training=training) + 1.0


def test_interrupted_directory_swap_is_recovered(saved_model_dir, tmp_path, monkeypatch):
    target = tmp_path / "m"
    shutil.copytree(saved_model_dir, target)
    new = tmp_path / "new"
    new.mkdir()
    real_replace = os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between moving the old one aside and the new in
        real_replace(src, dst)

    monkeypatch.setattr(export.os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        saving.replace(new, target)
    monkeypatch.undo()
    assert not target.exists() and (tmp_path / ".m.old").is_dir()
    # The next export to that path puts the previous artifact back first.
    tmp = saving.temporary_sibling(target)
    saving.remove(tmp)
    np.testing.assert_allclose(
        forecasters.run_saved_model(target, np.ones((1, 2), np.float32)), [[1, 2]]
    )


def test_write_json_failure_leaves_previous(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    saving.write_json(path, {"mse": 1.0})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        saving.write_json(path, {"mse": object()})  # fails midway through the dump
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["metrics.json"]


# -- resume bookkeeping -------------------------------------------------------------------


def test_fit_phases():
    assert training._fit_phases(0, 0, 3) == [(0, 3, 0)]
    assert training._fit_phases(1, 2, 3) == [(1, 1, 2), (2, 1, 0)]
    assert training._fit_phases(2, 5, 3) == [(2, 1, 5)]
    assert training._fit_phases(3, 0, 3) == [(3, 0, 0)]
    assert checkpointing.resume_position(7, 3) == (2, 1)
    assert checkpointing.resume_position(6, 3) == (2, 0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        checkpointing.resume_position(1, 0)


def test_trim_history_keeps_one_row_per_backed_up_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n0,0.5,0.4\n1,0.3,0.2\n2,0.25,0.1\n3,0.2")
    checkpointing.trim_history(path, 2)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["loss"]) for r in rows] == [("0", "0.5"), ("1", "0.3")]
    checkpointing.trim_history(tmp_path / "absent.csv", 1)  # nothing to trim
    assert _listing(tmp_path) == ["history.csv"]


def test_unreadable_backup_is_reported(tmp_path):
    assert checkpointing.read_backup(tmp_path) is None
    (tmp_path / checkpointing.BACKUP_FILE).write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(CorruptArtifactError, match="not a readable kerastp training backup"):
        checkpointing.read_backup(tmp_path)


def test_a_saved_model_this_cpu_cannot_run_says_how_to_fix_it(saved_model_dir):
    """A SavedModel with a dilated DepthwiseConv2dNative (earlier exports) fails on CPUs where
    TensorFlow's oneDNN path is off; the error names the file and the two ways out."""
    forecaster = forecasters.SavedModelForecaster(saved_model_dir)
    frames = np.ones((1, 2), np.float32)
    np.testing.assert_allclose(forecaster.predict(frames), [[1.0, 2.0]])

    def kernel_says(message):
        def signature(**inputs):
            raise tf.errors.UnimplementedError(None, None, message)

        return signature

    forecaster.signature = kernel_says(
        "Current kernel implementation does not support dilations, received [1 3 3 1]"
    )
    with pytest.raises(RuntimeError, match="TF_ENABLE_ONEDNN_OPTS=1") as raised:
        forecaster.predict(frames)
    assert str(saved_model_dir) in str(raised.value) and "kerastp export" in str(raised.value)
    forecaster.signature = kernel_says("some other missing kernel")
    with pytest.raises(tf.errors.UnimplementedError, match="some other missing kernel"):
        forecaster.predict(frames)
