"""Window augmentations: exact symmetries, one transform per window for inputs and targets,
seeded per pass, and the radar training stream that uses them."""

import json

import numpy as np
import pytest

from kerastp import training
from kerastp.data import radar
from kerastp.data.augment import WindowAugmentation
from kerastp.data.pydatasets import WindowsPyDataset
from kerastp.data.sources.radar import RadarSource


def _dihedral(window):
    """The eight rotations / flips of a (T, H, W, C) window."""
    out = []
    for flipped in (window, window[:, :, ::-1]):
        out += [np.rot90(flipped, k, axes=(1, 2)) for k in range(4)]
    return out


def _windows(count=32, size=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((count, 3, size, size, 1), dtype=np.float32),
            rng.random((count, 4, size, size, 1), dtype=np.float32))  # fmt: skip


def test_each_window_gets_one_symmetry_for_inputs_and_targets():
    past, future = _windows()
    augment = WindowAugmentation.from_name("dihedral")
    out_past, out_future = augment(past, future, np.random.default_rng(1))
    seen = set()
    for i in range(len(past)):
        original = np.concatenate([past[i], future[i]])
        moved = np.concatenate([out_past[i], out_future[i]])
        matches = [j for j, d in enumerate(_dihedral(original)) if np.array_equal(d, moved)]
        assert len(matches) == 1, i  # the same transform on every frame, nothing resampled
        seen.add(matches[0])
    assert len(seen) >= 6  # the draws cover the group (32 windows, 8 symmetries)


def test_shift_fills_with_zeros_and_keeps_values():
    augment = WindowAugmentation(rotate=False, flip=False, max_shift=2)
    window = np.arange(1, 2 * 5 * 5 + 1, dtype=np.float32).reshape(2, 5, 5, 1)
    moved = augment.transform(window, 0, False, (2, -1))
    expected = np.zeros_like(window)
    expected[:, 2:, :4] = window[:, :3, 1:]
    np.testing.assert_array_equal(moved, expected)
    past, future = _windows(64)
    out_past, _ = augment(past, future, np.random.default_rng(0))
    # Shifts up to 2 px along each axis: the inner 2x2 block always stays covered.
    assert np.all(out_past[:, :, 2:4, 2:4] > 0)
    assert np.any(out_past == 0.0)


def test_non_square_frames_rotate_by_half_turns_only():
    rng = np.random.default_rng(0)
    past = rng.random((16, 2, 4, 6, 1), dtype=np.float32)
    future = rng.random((16, 2, 4, 6, 1), dtype=np.float32)
    out_past, out_future = WindowAugmentation()(past, future, np.random.default_rng(0))
    assert out_past.shape == past.shape and out_future.shape == future.shape


def test_names_and_errors():
    assert WindowAugmentation.from_name("none") is None
    assert WindowAugmentation.from_name("dihedral_shift").max_shift == 8
    with pytest.raises(ValueError, match="augment"):
        WindowAugmentation.from_name("mixup")
    with pytest.raises(ValueError, match="max_shift"):
        WindowAugmentation(max_shift=-1)


def test_py_dataset_augments_per_pass_and_reproducibly():
    past, future = _windows(16)
    augment = WindowAugmentation.from_name("dihedral")

    def stream(epoch):
        data = WindowsPyDataset(past, future, 4, seed=3, augmentation=augment)
        data.epoch = epoch
        return data

    first, again, later = stream(0)[1], stream(0)[1], stream(1)[1]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], later[0])
    plain = WindowsPyDataset(past, future, 4, seed=3)[1]
    assert not np.array_equal(first[0], plain[0])  # same windows, transformed
    np.testing.assert_allclose(np.sort(first[0].ravel()), np.sort(plain[0].ravel()))


def test_radar_stream_takes_stride_and_augmentation(radar_dir):
    from kerastp import registry

    model = registry.build_model("motioncast_radar", hidden_dim=8, motion_blocks=1,
                                 residual_blocks=1)  # fmt: skip
    stride3, steps3 = RadarSource(seed=0).training_stream(model, 4, None)
    stride1, steps1 = RadarSource(seed=0, stride=1, augment="dihedral").training_stream(
        model, 4, None
    )
    train_past = radar.radar_arrays("train", stride=1)[0]
    assert steps1 == len(train_past) // 4 > 2.5 * steps3
    batch_past, batch_future = stride1[0]
    assert batch_past.shape == (4, 6, 64, 64, 1) and batch_future.shape == (4, 12, 64, 64, 1)
    source = RadarSource.from_config({"stride": 1, "augment": "dihedral", "seed": 2})
    assert (source.stride, source.augment, source.seed) == (1, "dihedral", 2)
    with pytest.raises(ValueError, match="augment"):
        RadarSource(augment="flip")


def test_training_refuses_augmenting_mnist_and_unknown_losses(tmp_path):
    with pytest.raises(ValueError, match="not available for data='procedural'"):
        training.train(preset="stlight_tiny", augment="dihedral", run_dir=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="`loss` must be one of"):
        training.train(preset="stlight_tiny", loss="huber", run_dir=str(tmp_path / "y"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_training_records_augment_and_loss(radar_dir, tmp_path):
    training.train(
        preset="motioncast_tiny",
        data="radar",
        augment="dihedral",
        loss="intensity",
        epochs=1,
        steps_per_epoch=2,
        batch_size=4,
        eval_sequences=0,
        verbose=0,
        overrides={"hidden_dim": 8},
        run_dir=str(tmp_path / "run"),
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["augment"], config["loss"], config["stride"]) == ("dihedral", "intensity", 1)
