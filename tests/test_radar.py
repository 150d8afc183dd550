"""Tests for kerastp.data.radar on the real shared radar events: transform, readers, windows,
splits, pipelines and every error path."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerastp.data import (
    DEFAULT_SPLIT,
    EXTRA_EVENTS,
    RAIN_RATE_MAX,
    THRESHOLDS_MM_H,
    THRESHOLDS_MODEL_SCALE,
    VALIDATION_EVENTS,
    list_events,
    load_event,
    radar_arrays,
    radar_dataset,
    resolve_radar_dir,
    sliding_windows,
    split_events,
    to_model_scale,
    to_rain_rate,
    window_starts,
)
from kerastp.data import radar as radar_module

SHARED_RADAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "radar"

# The README's table: event -> (frames, time step in minutes).
README_TABLE = {
    "mch_20150515": (40, 5),
    "mch_20160711": (40, 5),
    "mch_20170131": (40, 5),
    "fmi_20160928": (40, 5),
    "fmi_20170509": (40, 5),
    "rmi_20210704": (39, 5),
    "bom_20180616": (61, 6),
    "opera_20180824": (24, 15),
}
# Windows of 6 + 12 frames with stride 3: (T - 18) // 3 + 1.
WINDOWS = {40: 8, 39: 8, 61: 15, 24: 3}


def _copy_event(radar_dir, tmp_path, name="mch_20150515", resolution=64, drop=None, **replace):
    """Writes tmp_path/<resolution>/<name>.npz: a copy of a real event with keys replaced."""
    with np.load(radar_dir / str(resolution) / f"{name}.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays.update(replace)
    if drop is not None:
        del arrays[drop]
    folder = tmp_path / str(resolution)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{name}.npz", **arrays)
    return folder / f"{name}.npz"


def _collect(dataset):
    pasts, futures = zip(*[(p.numpy(), f.numpy()) for p, f in dataset], strict=True)
    return np.concatenate(pasts), np.concatenate(futures)


def _sorted_windows(past, future):
    """Windows in a canonical order (by their content), to compare shuffled passes as sets."""
    keys = [p.tobytes() + f.tobytes() for p, f in zip(past, future, strict=True)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return past[order], future[order]


# ------------------------------------------------------------------ model scale


def test_transform_golden_values_and_thresholds():
    assert RAIN_RATE_MAX == 100.0
    assert radar_module._LOG1P_MAX == pytest.approx(4.6151205168, abs=1e-10)
    # README: 0.5 / 1 / 5 mm/h are x = 0.0879 / 0.1502 / 0.3882.
    expected = [0.0879, 0.1502, 0.3882]
    np.testing.assert_allclose(to_model_scale(np.array(THRESHOLDS_MM_H)), expected, atol=5e-5)
    np.testing.assert_allclose(THRESHOLDS_MODEL_SCALE, expected, atol=5e-5)
    # Clip to [0, 100] only; the < 0.1 mm/h cut belongs to the native grid, not to here.
    x = to_model_scale(np.array([-3.0, 0.0, 0.05, 100.0, 250.0], np.float32))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, [0.0, 0.0, np.log1p(0.05) / np.log1p(100), 1.0, 1.0], rtol=1e-6)
    assert to_model_scale([0, 1, 100]).dtype == np.float32  # ints become float32
    assert np.isnan(to_model_scale(np.array([np.nan]))[0])
    np.testing.assert_allclose(
        to_rain_rate(np.array([-0.1, 0.5, 1.2]), clip=True)[[0, 2]], [0, 100]
    )
    assert to_rain_rate(np.array([-0.1]))[0] < 0  # exact inverse unless clip=True


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_round_trip_keeps_dtype(dtype):
    rate = np.random.default_rng(0).gamma(0.5, 8.0, size=(50, 7)).astype(dtype)
    rate = np.minimum(rate, RAIN_RATE_MAX)
    x = to_model_scale(rate)
    assert x.dtype == dtype and x.shape == rate.shape
    assert 0.0 <= x.min() and x.max() <= 1.0
    back = to_rain_rate(x)
    assert back.dtype == dtype
    np.testing.assert_allclose(back, rate, rtol=2e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_frames_are_the_transform_of_the_stored_rates(radar_dir):
    # The 128 files keep the rain rate (float16, before clipping) next to the frames.
    with np.load(radar_dir / "128" / "mch_20150515.npz") as archive:
        rate, frames = archive["rate"].astype(np.float32), archive["frames"]
    assert rate.max() > RAIN_RATE_MAX  # this event does clip (README: frac_clipped > 0)
    np.testing.assert_allclose(to_model_scale(rate), frames, atol=2e-4)


# ------------------------------------------------------------------ reading events


@pytest.mark.parametrize("resolution", [64, 128])
def test_every_event_matches_the_readme(radar_dir, resolution):
    assert list_events(radar_dir, resolution) == sorted(README_TABLE)
    for name, (num_frames, step) in README_TABLE.items():
        event = load_event(name, radar_dir, resolution)
        assert event.name == name and event.num_frames == num_frames
        assert event.frames.shape == (num_frames, resolution, resolution, 1)
        assert event.frames.dtype == np.float32
        assert 0.0 <= event.frames.min() and event.frames.max() <= 1.0
        assert event.frames.max() > THRESHOLDS_MODEL_SCALE[2]  # every event has >5 mm/h rain
        assert event.nodata_frac.shape == event.frames.shape
        assert event.times.dtype == np.dtype("datetime64[m]")
        assert event.time_step_minutes == step
        assert set(np.diff(event.times).astype(int).tolist()) == {step}
        assert event.metadata["timestep_min"] == step
        assert event.metadata["n_frames"] == num_frames
        assert event.times[0] == _iso(event.metadata["start"])
        assert event.times[-1] == _iso(event.metadata["end"])
        assert name in repr(event)


def _iso(stamp):
    return np.datetime64(f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}")


def test_resolve_radar_dir_order(radar_dir, tmp_path, monkeypatch):
    assert resolve_radar_dir(radar_dir) == radar_dir
    monkeypatch.setenv("KERASTP_RADAR", str(radar_dir))
    assert resolve_radar_dir() == radar_dir
    monkeypatch.delenv("KERASTP_RADAR")
    # cwd/../shared/data/radar comes before the repository's.
    local = tmp_path / "shared" / "data" / "radar"
    (local / "64").mkdir(parents=True)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert resolve_radar_dir().resolve() == local.resolve()
    monkeypatch.chdir(tmp_path)
    assert resolve_radar_dir().resolve() == radar_dir.resolve()  # found beside the repository


def test_resolve_radar_dir_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="path: .*nowhere.* does not exist"):
        resolve_radar_dir(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="not a radar data directory"):
        resolve_radar_dir(tmp_path)
    monkeypatch.setenv("KERASTP_RADAR", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError, match="environment variable KERASTP_RADAR"):
        resolve_radar_dir()
    monkeypatch.delenv("KERASTP_RADAR")
    monkeypatch.chdir(tmp_path)
    fake_module = tmp_path / "a" / "repo" / "kerastp" / "data" / "radar.py"
    monkeypatch.setattr(radar_module, "__file__", str(fake_module))
    with pytest.raises(FileNotFoundError) as info:
        resolve_radar_dir()
    message = str(info.value)
    assert "KERASTP_RADAR" in message and "never downloaded" in message
    assert str((tmp_path.parent / "shared" / "data" / "radar").resolve()) in message
    assert str((tmp_path / "a" / "shared" / "data" / "radar").resolve()) in message


def test_load_event_errors(radar_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no_such_event\.npz.*mch_20150515"):
        load_event("no_such_event", radar_dir)
    with pytest.raises(ValueError, match=r"\(64, 128\).*resolution=96"):
        load_event("mch_20150515", radar_dir, resolution=96)
    with pytest.raises(ValueError, match="resolution"):
        list_events(radar_dir, resolution="64")
    with pytest.raises(ValueError, match="event name"):
        load_event("../64/mch_20150515", radar_dir)

    frames = load_event("mch_20150515", radar_dir).frames[..., 0]
    with np.load(radar_dir / "64" / "mch_20150515.npz") as archive:
        times = archive["times"]

    def reject(match, **changes):
        file = _copy_event(radar_dir, tmp_path, **changes)
        with pytest.raises(ValueError, match=match) as info:
            load_event("mch_20150515", tmp_path)
        assert str(file) in str(info.value)

    bad = frames.copy()
    bad[3, 1, 2], bad[7, 0, 0], bad[9, 5, 5] = np.nan, np.inf, -np.inf
    reject("holds 3 NaN or Inf values", frames=bad)
    bad = frames.copy()
    bad[0, :2, 0] = [1.5, -0.25]
    reject("holds 2 values outside the model scale", frames=bad)
    reject("missing key 'times'", drop="times")
    reject("missing key 'meta_json'", drop="meta_json")
    swapped = times.copy()
    swapped[[4, 5]] = swapped[[5, 4]]
    reject("not strictly increasing with a constant step", times=swapped)
    gap = times.copy()
    gap[10:] = [_shift(t, 5) for t in times[10:]]  # one 10-minute step
    reject(r"constant step; steps in minutes: \[5, 10\]", times=gap)
    reject("not 'YYYYmmddHHMM'", times=np.array(["2015-05-15"] * len(times)))
    reject("key 'times' has 39 entries for 40 frames", times=times[:-1])
    reject("'frames' must be floating", frames=(frames * 255).astype(np.uint8))
    reject("'nodata_frac' has shape", nodata_frac=np.zeros((40, 2, 2), np.float16))
    reject("'meta_json' is not valid JSON", meta_json=np.array("{not json"))

    (tmp_path / "64" / "mch_20150515.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(ValueError, match=r"mch_20150515\.npz: not a readable \.npz"):
        load_event("mch_20150515", tmp_path)


def _shift(stamp, minutes):
    shifted = _iso(str(stamp)) + np.timedelta64(minutes, "m")
    return (
        np.datetime_as_string(shifted, unit="m").replace("-", "").replace("T", "").replace(":", "")
    )


# ------------------------------------------------------------------ windows


def test_windows_per_event(radar_dir):
    for name, (num_frames, _) in README_TABLE.items():
        event = load_event(name, radar_dir)
        past, future = sliding_windows(event.frames)
        count = WINDOWS[num_frames]
        assert past.shape == (count, 6, 64, 64, 1) and future.shape == (count, 12, 64, 64, 1)
        starts = window_starts(num_frames)
        assert starts.tolist() == list(range(0, 3 * count, 3))
        np.testing.assert_array_equal(past[-1], event.frames[starts[-1] : starts[-1] + 6])
        np.testing.assert_array_equal(future[-1], event.frames[starts[-1] + 6 : starts[-1] + 18])


def test_window_errors():
    frames = np.zeros((17, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="needs 18 frames; received 17 frames"):
        sliding_windows(frames)
    with pytest.raises(ValueError, match=r"rank 4.*\(17, 4, 4\) \(rank 3\)"):
        sliding_windows(frames[..., 0], 2, 2)
    for kwargs in ({"input_frames": 0}, {"output_frames": -1}, {"stride": 0}):
        (argument,) = kwargs
        with pytest.raises(ValueError, match=f"{argument} must be >= 1"):
            sliding_windows(frames, **{"input_frames": 2, "output_frames": 2, **kwargs})
    with pytest.raises(ValueError, match="stride must be an int"):
        window_starts(20, stride=1.5)
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        window_starts(0)


@settings(max_examples=150, deadline=None)
@given(
    num_frames=st.integers(1, 60),
    input_frames=st.integers(1, 12),
    output_frames=st.integers(1, 15),
    stride=st.integers(1, 10),
    channels=st.integers(1, 2),
)
def test_sliding_windows_properties(num_frames, input_frames, output_frames, stride, channels):
    # Every frame holds its own index, so a window's values spell out where it came from.
    frames = np.broadcast_to(
        np.arange(num_frames, dtype=np.float32)[:, None, None, None], (num_frames, 2, 3, channels)
    )
    length = input_frames + output_frames
    if num_frames < length:
        with pytest.raises(ValueError, match=f"needs {length} frames; received {num_frames}"):
            sliding_windows(frames, input_frames, output_frames, stride)
        return
    starts = window_starts(num_frames, input_frames, output_frames, stride)
    past, future = sliding_windows(frames, input_frames, output_frames, stride)
    count = (num_frames - length) // stride + 1
    assert len(starts) == count == len(past) == len(future)
    assert starts[0] == 0 and starts[-1] + length <= num_frames < starts[-1] + stride + length
    assert np.all(np.diff(starts) == stride)
    assert past.shape == (count, input_frames, 2, 3, channels)
    assert future.shape == (count, output_frames, 2, 3, channels)
    assert past.dtype == frames.dtype
    for start, p, f in zip(starts, past, future, strict=True):
        np.testing.assert_array_equal(p, frames[start : start + input_frames])  # contiguous
        np.testing.assert_array_equal(f, frames[start + input_frames : start + length])
    # Adjacent: each future begins right after its past ends.
    np.testing.assert_array_equal(future[:, 0, 0, 0, 0], past[:, -1, 0, 0, 0] + 1)


# ------------------------------------------------------------------ splits


def test_default_split(radar_dir):
    events = list_events(radar_dir)
    assert dict(DEFAULT_SPLIT) == split_events(events)  # the constant matches the data
    assert split_events(path=radar_dir) == dict(DEFAULT_SPLIT)
    members = [name for group in DEFAULT_SPLIT.values() for name in group]
    assert sorted(members) == events and len(set(members)) == len(members)  # disjoint, complete
    assert DEFAULT_SPLIT["val"] == VALIDATION_EVENTS and DEFAULT_SPLIT["extra"] == EXTRA_EVENTS
    val = [load_event(name, radar_dir) for name in VALIDATION_EVENTS]
    assert {event.time_step_minutes for event in val} == {5}
    assert len({event.metadata["source"] for event in val}) == 2
    train = [load_event(name, radar_dir) for name in DEFAULT_SPLIT["train"]]
    assert {event.time_step_minutes for event in train} == {5}
    assert {load_event(n, radar_dir).time_step_minutes for n in EXTRA_EVENTS} == {6, 15}


def test_split_events_custom_and_errors():
    names = ["a", "b", "c", "d", "e"]
    split = split_events(names, val=["b"], test=["e", "a"], extra=[])
    assert split == {"train": ("c", "d"), "val": ("b",), "test": ("e", "a"), "extra": ()}
    with pytest.raises(ValueError, match=r"val lists unknown events \['z'\]"):
        split_events(names, val=["z"])
    with pytest.raises(ValueError, match="'b' is in both val and test"):
        split_events(names, val=["b"], test=["b"])
    with pytest.raises(ValueError, match="'c' is in both test and extra"):
        split_events(names, val=["b"], test=["c"], extra=["c"])
    with pytest.raises(ValueError, match="val must be a list or tuple"):
        split_events(names, val="b")
    with pytest.raises(ValueError, match=r"names lists \['a'\] more than once"):
        split_events(["a", "a"], val=[])


# ------------------------------------------------------------------ datasets


def test_dataset_shapes_cardinality_and_shuffle(radar_dir):
    past_np, future_np = radar_arrays("train", radar_dir)
    assert past_np.shape == (32, 6, 64, 64, 1) and future_np.shape == (32, 12, 64, 64, 1)
    ds = radar_dataset("train", radar_dir, batch_size=5)
    past_spec, future_spec = ds.element_spec
    assert tuple(past_spec.shape) == (None, 6, 64, 64, 1)
    assert tuple(future_spec.shape) == (None, 12, 64, 64, 1)
    assert past_spec.dtype.name == future_spec.dtype.name == "float32"
    assert int(ds.cardinality()) == 7  # ceil(32 / 5)
    first, second = _collect(ds), _collect(ds)
    assert [int(p.shape[0]) for p, _ in ds] == [5, 5, 5, 5, 5, 5, 2]
    assert not np.array_equal(first[0], second[0])  # reshuffled every pass
    expected = _sorted_windows(past_np, future_np)
    for epoch in (first, second):
        assert not np.array_equal(epoch[0], past_np)  # shuffled
        for got, want in zip(_sorted_windows(*epoch), expected, strict=True):
            np.testing.assert_array_equal(got, want)
    # A new dataset with the same seed replays the same passes, with or without the cache.
    again = radar_dataset("train", radar_dir, batch_size=5, cache=False)
    np.testing.assert_array_equal(_collect(again)[0], first[0])
    np.testing.assert_array_equal(_collect(again)[0], second[0])
    unshuffled = radar_dataset("train", radar_dir, batch_size=5, shuffle=False)
    np.testing.assert_array_equal(_collect(unshuffled)[1], future_np)


def test_validation_dataset_is_ordered_and_drop_remainder(radar_dir):
    past_np, future_np, info = radar_arrays("validation", radar_dir, return_info=True)
    assert len(past_np) == 16
    assert info["event"].tolist() == ["fmi_20170509"] * 8 + ["mch_20170131"] * 8
    assert info["start"].tolist() == list(range(0, 24, 3)) * 2
    fmi = load_event("fmi_20170509", radar_dir)
    assert info["issue_time"][1] == fmi.times[3 + 5]
    ds = radar_dataset("val", radar_dir, batch_size=3, drop_remainder=True)
    assert tuple(ds.element_spec[0].shape) == (3, 6, 64, 64, 1)
    assert int(ds.cardinality()) == 5
    past, future = _collect(ds)
    np.testing.assert_array_equal(past, past_np[:15])
    np.testing.assert_array_equal(future, future_np[:15])


def test_dataset_128_and_custom_protocol(radar_dir):
    ds = radar_dataset(
        "val", radar_dir, resolution=128, input_frames=4, output_frames=4, stride=8, batch_size=4
    )
    assert tuple(ds.element_spec[1].shape) == (None, 4, 128, 128, 1)
    assert int(ds.cardinality()) == 3  # 2 events x ((40 - 8) // 8 + 1 = 5) = 10 windows


def test_mixed_time_steps(radar_dir):
    with pytest.raises(ValueError, match=r"bom_20180616 \(6 min\), mch_20150515 \(5 min\)"):
        radar_dataset(events=["bom_20180616", "mch_20150515"], path=radar_dir)
    with pytest.raises(ValueError, match=r"bom_20180616 \(6 min\), opera_20180824 \(15 min\)"):
        radar_arrays("extra", radar_dir)
    ds = radar_dataset("extra", radar_dir, batch_size=4, allow_mixed_time_steps=True)
    assert int(ds.cardinality()) == 5  # 15 + 3 windows
    past, future = radar_arrays(events=["bom_20180616"], path=radar_dir)
    assert past.shape[0] == future.shape[0] == 15


def test_dataset_errors(radar_dir, tmp_path):
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'val'"):
        radar_dataset("training", radar_dir)
    with pytest.raises(ValueError, match="split 'test' has no events"):
        radar_dataset("test", radar_dir)
    with pytest.raises(ValueError, match="events must name at least one event"):
        radar_dataset(events=[], path=radar_dir)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        radar_dataset(path=radar_dir, batch_size=0)
    with pytest.raises(ValueError, match="16 windows, fewer than batch_size=32"):
        radar_dataset("val", radar_dir, batch_size=32, drop_remainder=True)
    with pytest.raises(ValueError, match="'opera_20180824' has 24 frames, fewer than .* 30"):
        radar_arrays(events=["opera_20180824"], path=radar_dir, input_frames=10, output_frames=20)
    with pytest.raises(FileNotFoundError, match="mch_20150515.npz"):
        radar_dataset(path=_copy_event(radar_dir, tmp_path, "fmi_20160928").parents[1])
    custom = split_events(list_events(radar_dir), val=["mch_20160711"], test=["rmi_20210704"])
    past, _ = radar_arrays("test", radar_dir, splits=custom)
    assert past.shape[0] == 8  # rmi_20210704: 39 frames -> 8 windows


def test_copied_data_dir_via_env(radar_dir, tmp_path, monkeypatch):
    shutil.copytree(radar_dir / "64", tmp_path / "64")
    monkeypatch.setenv("KERASTP_RADAR", str(tmp_path))
    assert list_events() == sorted(README_TABLE)
    assert load_event("opera_20180824").frames.shape == (24, 64, 64, 1)


def test_radar_training_config_fits_ustep_segments_to_six_inputs():
    """USTEP's default DT 5 cannot split 6 radar inputs: the resolved config picks DT 3."""
    from kerastp import registry
    from kerastp.training import TrainConfig

    config = TrainConfig(preset="ustep_tiny", data="radar").resolved()
    assert config.overrides["input_frames"] == 6 and config.overrides["output_frames"] == 12
    assert config.overrides["macro_frames"] == 3
    model = registry.build_model(config.preset, **config.overrides)
    assert (model.input_frames, model.output_frames, model.height) == (6, 12, 64)
    stlight = TrainConfig(preset="stlight_tiny", data="radar").resolved()
    assert "macro_frames" not in stlight.overrides
