"""Tests for kerastp.data.tfds_builders: the TFDS builders of the Moving MNIST test sets and the
radar windows, built offline into tmp_path and compared with kerastp's own loaders."""

import importlib
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from kerastp.data import (  # noqa: E402
    DEFAULT_SPLIT,
    MnistUnavailableError,
    mnist_files,
    radar_arrays,
    standard_set,
    standard_test_set,
)
from kerastp.data import tfds_builders as tb  # noqa: E402

SHARED_RADAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "radar"
N_SMALL = 64


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Fails the test if anything (TFDS included) tries to open a connection or resolve a name."""
    attempts = []

    def refuse_connect(self, address):
        attempts.append(address)
        raise OSError(f"network access in a test: {address}")

    def refuse_lookup(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError(f"DNS lookup in a test: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_connect)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    yield
    assert attempts == [], f"network accessed: {attempts}"


@pytest.fixture
def shared_radar():
    if not (SHARED_RADAR / "64").is_dir():
        pytest.skip(f"radar data not found at {SHARED_RADAR}")
    return SHARED_RADAR


@pytest.fixture(scope="module")
def radar64(tmp_path_factory):
    """The res64 builder, prepared once for the module from the shared radar events."""
    if not (SHARED_RADAR / "64").is_dir():
        pytest.skip(f"radar data not found at {SHARED_RADAR}")
    data_dir = tmp_path_factory.mktemp("tfds_radar")
    builder = tb.radar_builder(64, data_dir=data_dir)
    builder.download_and_prepare(download_config=tb._download_config(SHARED_RADAR))
    return builder


def _numpy(dataset):
    return list(tfds.as_numpy(dataset))


def _sequences(dataset):
    examples = _numpy(dataset)
    return np.stack([e["image_sequence"] for e in examples]), [int(e["index"]) for e in examples]


# --------------------------------------------------------------------------------------------
# Packaging and registration
# --------------------------------------------------------------------------------------------


def test_importing_kerastp_does_not_import_tfds():
    code = (
        "import sys, kerastp, kerastp.data; "
        "assert 'tensorflow_datasets' not in sys.modules, 'tfds imported'; "
        "assert 'kerastp.data.tfds_builders' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_builders_are_registered_with_their_configs():
    names = tfds.list_builders(with_community_datasets=False)
    assert {"kerastp_moving_mnist", "kerastp_radar"} <= set(names)
    assert list(tb.KerastpMovingMnist.builder_configs) == ["procedural", "mnist", "official"]
    assert list(tb.KerastpRadar.builder_configs) == ["res64", "res128"]
    assert tb.KerastpMovingMnist.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "shared/data/radar" in tb.KerastpRadar.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_missing_tfds_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "kerastp.data.tfds_builders")
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r'pip install "kerastp\[tfds\]"'):
        importlib.import_module("kerastp.data.tfds_builders")


def test_invalid_arguments_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="source"):
        tb.MovingMnistConfig(name="x", source="kth")
    for bad in (0, 10001, 2.5):
        with pytest.raises(ValueError, match="num_sequences"):
            tb.moving_mnist_builder("procedural", num_sequences=bad, data_dir=tmp_path)
    with pytest.raises(ValueError, match="seed"):
        tb.moving_mnist_builder("procedural", num_sequences=8, seed=-1, data_dir=tmp_path)
    with pytest.raises(ValueError, match="resolution"):
        tb.radar_builder(32, data_dir=tmp_path)
    with pytest.raises(ValueError, match="input_frames"):
        tb.load_moving_mnist(as_pairs=True, input_frames=15, output_frames=10, data_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Moving MNIST
# --------------------------------------------------------------------------------------------


def test_tfds_load_registered_procedural_config_equals_standard_test_set(tmp_path):
    # The registered config through tfds.load by name, generation capped at 64 examples.
    dataset, info = tfds.load(
        "kerastp_moving_mnist/procedural",
        split="test",
        data_dir=tmp_path,
        with_info=True,
        download_and_prepare_kwargs={
            "download_config": tfds.download.DownloadConfig(max_examples_per_split=N_SMALL)
        },
    )
    assert info.features["image_sequence"].shape == (20, 64, 64, 1)
    assert info.features["image_sequence"].np_dtype == np.uint8
    assert info.disable_shuffling
    sequences, indices = _sequences(dataset)
    assert sequences.shape == (N_SMALL, 20, 64, 64, 1) and sequences.dtype == np.uint8
    assert indices == list(range(N_SMALL))
    np.testing.assert_array_equal(sequences, standard_test_set(N_SMALL, source="procedural"))


def test_load_moving_mnist_small_config_pairs_and_reuse(tmp_path):
    dataset = tb.load_moving_mnist(num_sequences=8, seed=3, data_dir=tmp_path)
    assert dataset.cardinality().numpy() == 8
    sequences, indices = _sequences(dataset)
    expected = standard_test_set(8, source="procedural", seed=3)
    np.testing.assert_array_equal(sequences, expected)
    assert indices == list(range(8))
    assert (tmp_path / "kerastp_moving_mnist" / "procedural_n8_seed3" / "1.0.0").is_dir()
    rebuilt = tb.load_moving_mnist(
        num_sequences=8, seed=3, data_dir=tmp_path, download_mode="force_redownload"
    )
    np.testing.assert_array_equal(_sequences(rebuilt)[0], expected)

    pairs = _numpy(tb.load_moving_mnist(num_sequences=8, seed=3, data_dir=tmp_path, as_pairs=True))
    past, future = pairs[0]
    assert past.shape == (10, 64, 64, 1) and future.shape == (10, 64, 64, 1)
    assert past.dtype == np.float32
    np.testing.assert_allclose(past, expected[0, :10] / np.float32(255.0), atol=1e-7)
    np.testing.assert_allclose(future, expected[0, 10:] / np.float32(255.0), atol=1e-7)


def test_mnist_config_reads_digits_from_manual_dir(tmp_path, shared_mnist):
    dataset = tb.load_moving_mnist(
        source="mnist", num_sequences=16, data_dir=tmp_path, manual_dir=shared_mnist.parent
    )
    sequences, _ = _sequences(dataset)
    np.testing.assert_array_equal(
        sequences, standard_test_set(16, source="mnist", path=shared_mnist)
    )


def test_mnist_config_reads_digits_from_env(tmp_path, monkeypatch):
    digits = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    npz = tmp_path / "digits" / "mnist.npz"
    npz.parent.mkdir()
    np.savez(npz, x_test=digits, x_train=digits)
    monkeypatch.setenv(mnist_files.MNIST_ENV_VAR, str(npz))
    dataset = tb.load_moving_mnist(source="mnist", num_sequences=4, data_dir=tmp_path / "tfds")
    sequences, _ = _sequences(dataset)
    np.testing.assert_array_equal(sequences, standard_test_set(4, source="mnist", path=npz))


def test_mnist_config_without_digits_fails_offline(tmp_path, monkeypatch):
    monkeypatch.delenv(mnist_files.MNIST_ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    with pytest.raises(MnistUnavailableError, match="procedural"):
        tb.load_moving_mnist(source="mnist", num_sequences=4, data_dir=tmp_path / "tfds")


def _fake_test_seq(directory, monkeypatch, count=6):
    """Writes a small time-major mnist_test_seq.npy and lets kerastp's reader accept its size."""
    data = np.random.default_rng(1).integers(0, 256, (20, count, 64, 64), dtype=np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "mnist_test_seq.npy", data)
    monkeypatch.setattr(standard_set, "_TEST_SEQ_SHAPE", data.shape)
    return data.transpose(1, 0, 2, 3)[..., None]


def test_official_config_reads_mnist_test_seq_from_manual_dir(tmp_path, monkeypatch):
    manual = tmp_path / "manual"
    expected = _fake_test_seq(manual, monkeypatch)
    dataset = tfds.load(
        "kerastp_moving_mnist/official",
        split="test",
        data_dir=tmp_path / "tfds",
        download_and_prepare_kwargs={
            "download_config": tfds.download.DownloadConfig(manual_dir=str(manual))
        },
    )
    sequences, indices = _sequences(dataset)
    assert sequences.shape == (6, 20, 64, 64, 1) and sequences.dtype == np.uint8
    assert indices == list(range(6))
    np.testing.assert_array_equal(sequences, expected)

    first = tb.load_moving_mnist(
        "test[:2]", source="official", num_sequences=2, manual_dir=manual, data_dir=tmp_path
    )
    np.testing.assert_array_equal(_sequences(first)[0], expected[:2])


def test_official_config_without_file_gives_manual_instructions(tmp_path):
    with pytest.raises(AssertionError, match=r"(?s)does not exist or is empty.*mnist_test_seq"):
        tb.load_moving_mnist(source="official", data_dir=tmp_path)
    assert not (tmp_path / "kerastp_moving_mnist" / "official" / "1.0.0").exists()


# --------------------------------------------------------------------------------------------
# Radar
# --------------------------------------------------------------------------------------------


def test_radar_split_sizes_follow_default_split(radar64):
    splits = radar64.info.splits
    assert sorted(splits) == sorted(k for k, v in DEFAULT_SPLIT.items() if v)
    # Stride-3 windows of 18 frames: (T - 18) // 3 + 1 per event, so 8 for each 40-frame event
    # and for RMI's 39 frames, 15 for BoM's 61 frames and 3 for OPERA's 24.
    assert splits["train"].num_examples == 32
    assert splits["val"].num_examples == 16
    assert splits["extra"].num_examples == 18
    assert radar64.info.supervised_keys == ("past", "future")


@pytest.mark.parametrize("split", ["train", "val", "extra"])
def test_radar_windows_equal_radar_arrays(radar64, shared_radar, split):
    examples = _numpy(radar64.as_dataset(split=split, shuffle_files=False))
    past, future, info = radar_arrays(
        split, path=shared_radar, return_info=True, allow_mixed_time_steps=True
    )
    got_past = np.stack([e["past"] for e in examples])
    got_future = np.stack([e["future"] for e in examples])
    assert got_past.shape == (len(past), 6, 64, 64, 1) and got_past.dtype == np.float32
    assert got_future.shape == (len(past), 12, 64, 64, 1) and got_future.dtype == np.float32
    np.testing.assert_array_equal(got_past, past)
    np.testing.assert_array_equal(got_future, future)
    assert [e["event"].decode() for e in examples] == info["event"].tolist()
    assert [int(e["start"]) for e in examples] == info["start"].tolist()
    assert [e["issue_time"].decode() for e in examples] == [str(t) for t in info["issue_time"]]
    steps = {e["event"].decode(): int(e["time_step_minutes"]) for e in examples}
    assert set(steps.values()) == ({6, 15} if split == "extra" else {5})


def test_tfds_load_radar_by_name_and_load_radar_helper(radar64, shared_radar):
    data_dir = radar64.data_dir_root
    dataset = tfds.load("kerastp_radar/res64", split="val", data_dir=data_dir, as_supervised=True)
    pairs = _numpy(dataset)
    past, future = radar_arrays("val", path=shared_radar)
    np.testing.assert_array_equal(np.stack([p for p, _ in pairs]), past)
    np.testing.assert_array_equal(np.stack([f for _, f in pairs]), future)

    helper = tb.load_radar("validation", data_dir=data_dir, manual_dir=shared_radar)
    assert helper.cardinality().numpy() == 16
    assert set(helper.element_spec) == {
        "past",
        "future",
        "event",
        "issue_time",
        "start",
        "time_step_minutes",
    }
    batched = tb.load_radar("train", data_dir=data_dir, as_supervised=True).batch(8)
    assert [tuple(s.shape) for s in batched.element_spec] == [
        (None, 6, 64, 64, 1),
        (None, 12, 64, 64, 1),
    ]


def test_radar_128(tmp_path, shared_radar):
    dataset = tb.load_radar("val", resolution=128, manual_dir=shared_radar, data_dir=tmp_path)
    examples = _numpy(dataset)
    past, future = radar_arrays("val", path=shared_radar, resolution=128)
    assert len(examples) == 16
    np.testing.assert_array_equal(np.stack([e["past"] for e in examples]), past)
    np.testing.assert_array_equal(np.stack([e["future"] for e in examples]), future)


def test_radar_without_manual_dir_gives_instructions(tmp_path):
    builder = tb.radar_builder(64, data_dir=tmp_path)
    config = tfds.download.DownloadConfig(manual_dir=str(tmp_path / "missing"))
    with pytest.raises(AssertionError, match=r"(?s)does not exist or is empty.*shared/data/radar"):
        builder.download_and_prepare(download_config=config)
    not_radar = tmp_path / "not_radar"
    not_radar.mkdir()
    (not_radar / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="not a radar data directory"):
        tb.load_radar("val", manual_dir=not_radar, data_dir=tmp_path)
