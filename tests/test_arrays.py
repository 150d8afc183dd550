"""Tests for kerastp.data.arrays: readers of every format, normalisation, windows, splits,
pipelines and every error path. The optional readers (h5py, zarr, xarray) are skipped when
they are not installed."""

import json
import re
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kerastp.data import (
    ARRAY_SUFFIXES,
    NORMALIZATION_METHODS,
    Normalization,
    array_dataset,
    array_windows,
    load_array,
    prepare_arrays,
    sliding_windows,
    split_sequences,
    split_series,
)


def _frames(*shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _indexed_sequences(n, t, h=2, w=3, c=1):
    """(N, T, H, W, C) whose value is 1000 * sequence + frame: a window spells its origin."""
    values = 1000.0 * np.arange(n)[:, None] + np.arange(t)[None, :]
    return np.broadcast_to(values[:, :, None, None, None], (n, t, h, w, c)).astype(np.float32)


def _netcdf_engine():
    pytest.importorskip("xarray")
    for module, engine in (("netCDF4", "netcdf4"), ("h5netcdf", "h5netcdf")):
        try:
            __import__(module)
        except ImportError:
            continue
        return engine
    pytest.skip("neither netCDF4 nor h5netcdf is installed")


# ------------------------------------------------------------------ formats


def test_npy_round_trip_and_rank3(tmp_path):
    frames = _frames(7, 4, 5, 2)
    np.save(tmp_path / "series.npy", frames)
    loaded = load_array(tmp_path / "series.npy")
    assert loaded.dtype == np.float32 and loaded.shape == (7, 4, 5, 2)
    np.testing.assert_array_equal(loaded, frames)
    # Rank 3 (T, H, W) gains a channel axis; integer data become float32 with equal values.
    gray = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    with open(tmp_path / "gray.NPY", "wb") as f:  # suffixes are case-insensitive
        np.save(f, gray)
    loaded = load_array(str(tmp_path / "gray.NPY"))
    assert loaded.shape == (3, 4, 5, 1) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded[..., 0], gray)
    # Rank 5 stays as it is.
    sequences = _frames(2, 6, 4, 5, 1)
    np.save(tmp_path / "seq.npy", sequences)
    np.testing.assert_array_equal(load_array(tmp_path / "seq.npy"), sequences)


def test_npz_with_and_without_key(tmp_path):
    frames = _frames(6, 4, 4, 1)
    np.savez(tmp_path / "one.npz", frames=frames)
    np.testing.assert_array_equal(load_array(tmp_path / "one.npz"), frames)
    np.testing.assert_array_equal(load_array(tmp_path / "one.npz", key="frames"), frames)
    other = _frames(6, 4, 4, 1, seed=1)
    np.savez_compressed(tmp_path / "two.npz", b=other, a=frames)
    np.testing.assert_array_equal(load_array(tmp_path / "two.npz", key="b"), other)
    with pytest.raises(ValueError, match=r"two\.npz: holds 2 arrays \['a', 'b'\]; pass key="):
        load_array(tmp_path / "two.npz")
    with pytest.raises(ValueError, match=r"two\.npz: missing key 'c' .*; found \['a', 'b'\]"):
        load_array(tmp_path / "two.npz", key="c")
    np.savez(tmp_path / "none.npz")
    with pytest.raises(ValueError, match=r"none\.npz: holds no arrays"):
        load_array(tmp_path / "none.npz")


def test_hdf5_round_trip(tmp_path):
    h5py = pytest.importorskip("h5py")
    frames = _frames(5, 4, 4, 3)
    file = tmp_path / "data.h5"
    with h5py.File(file, "w") as f:
        f.create_dataset("radar/frames", data=frames)
        f.create_dataset("mask", data=np.ones((5, 4, 4), np.uint8))
    np.testing.assert_array_equal(load_array(file, key="radar/frames"), frames)
    assert load_array(file, key="mask").shape == (5, 4, 4, 1)
    with pytest.raises(ValueError, match=r"data\.h5: holds 2 datasets \['mask', 'radar/frames'"):
        load_array(file)
    with pytest.raises(ValueError, match=r"data\.h5: no dataset 'nope'; available datasets"):
        load_array(file, key="nope")
    with pytest.raises(ValueError, match=r"data\.h5: 'radar' is an HDF5 group, not a dataset"):
        load_array(file, key="radar")
    single = tmp_path / "single.hdf5"
    with h5py.File(single, "w") as f:
        f.create_dataset("x", data=frames[None])  # (1, T, H, W, C)
        f.create_dataset("names", data=np.array([b"a", b"b"]))
    np.testing.assert_array_equal(load_array(single, key="x"), frames[None])
    with pytest.raises(
        ValueError, match=r"single\.hdf5 \(key 'names'\): dtype \|S1 is not numeric"
    ):
        load_array(single, key="names")
    (tmp_path / "fake.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match=r"fake\.h5: not a readable HDF5 file"):
        load_array(tmp_path / "fake.h5")


def test_zarr_round_trip(tmp_path):
    zarr = pytest.importorskip("zarr")
    frames = _frames(6, 4, 4, 1)
    zarr.save(str(tmp_path / "one.zarr"), frames)
    np.testing.assert_array_equal(load_array(tmp_path / "one.zarr"), frames)
    with pytest.raises(ValueError, match=r"one\.zarr: the Zarr store is a single array"):
        load_array(tmp_path / "one.zarr", key="frames")
    zarr.save(str(tmp_path / "group.zarr"), frames=frames, other=frames[:2])
    np.testing.assert_array_equal(load_array(tmp_path / "group.zarr", key="frames"), frames)
    with pytest.raises(ValueError, match=r"group\.zarr: holds 2 arrays \['frames', 'other'\]"):
        load_array(tmp_path / "group.zarr")
    with pytest.raises(ValueError, match=r"group\.zarr: no array 'x'; available arrays"):
        load_array(tmp_path / "group.zarr", key="x")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ValueError, match=r"empty\.zarr: not a readable Zarr store"):
        load_array(tmp_path / "empty.zarr")


def test_netcdf_round_trip(tmp_path):
    engine = _netcdf_engine()
    import xarray

    frames = _frames(6, 4, 5)
    dims = ("time", "y", "x")
    file = tmp_path / "data.nc"
    xarray.Dataset(
        {"precip": (dims, frames), "temp": (dims, frames + 1)},
        coords={"time": np.arange(6)},
    ).to_netcdf(file, engine=engine)
    np.testing.assert_array_equal(load_array(file, key="temp")[..., 0], frames + 1)
    with pytest.raises(ValueError, match=r"data\.nc: holds 2 variables \['precip', 'temp'\]"):
        load_array(file)
    with pytest.raises(ValueError, match=r"data\.nc: no variable 'rain'; available variables"):
        load_array(file, key="rain")
    gaps = frames.copy()
    gaps[0, 0, :2] = np.nan
    xarray.Dataset({"precip": (dims, gaps)}).to_netcdf(tmp_path / "gaps.nc", engine=engine)
    with pytest.raises(ValueError, match=r"gaps\.nc: holds 2 NaN and 0 Inf .*_FillValue"):
        load_array(tmp_path / "gaps.nc")
    xarray.Dataset({"precip": (dims, frames)}).to_netcdf(tmp_path / "one.nc", engine=engine)
    np.testing.assert_array_equal(load_array(tmp_path / "one.nc")[..., 0], frames)


@pytest.mark.parametrize(
    ("suffix", "blocked", "extra"),
    [
        (".h5", ("h5py",), "hdf5"),
        (".zarr", ("zarr",), "zarr"),
        (".nc", ("xarray",), "netcdf"),
        (".nc", ("netCDF4", "h5netcdf"), "netcdf"),
    ],
)
def test_missing_optional_library(tmp_path, monkeypatch, suffix, blocked, extra):
    if blocked == ("netCDF4", "h5netcdf"):
        pytest.importorskip("xarray")
    for module in blocked:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    file = tmp_path / f"data{suffix}"
    file.mkdir() if suffix == ".zarr" else file.write_bytes(b"")
    with pytest.raises(ImportError, match=rf"data{suffix}.*pip install \"kerastp\[{extra}\]\""):
        load_array(file)


# ------------------------------------------------------------------ reader errors


def test_load_array_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*missing\.npy' not found"):
        load_array(tmp_path / "missing.npy")
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"data\.csv: unknown suffix '\.csv'; supported: \.npy"):
        load_array(tmp_path / "data.csv")
    message = str(pytest.raises(ValueError, load_array, tmp_path / "data.csv").value)
    assert all(suffix in message for suffix in ARRAY_SUFFIXES)
    assert "extra 'hdf5'" in message

    cases = {
        "rank2.npy": (np.zeros((4, 4), np.float32), r"wrong rank 2 \(shape \(4, 4\)\)"),
        "rank6.npy": (np.zeros((1, 2, 3, 4, 5, 6)), r"wrong rank 6"),
        "text.npy": (np.array([["a", "b"]] * 3), r"dtype <U1 is not numeric"),
        "complex.npy": (np.zeros((2, 3, 4), np.complex64), r"dtype complex64 is not numeric"),
        "empty.npy": (np.zeros((0, 4, 4), np.float32), r"the array is empty \(shape \(0, 4, 4\)"),
        "huge.npy": (np.full((2, 2, 2), 1e300), r"holds 0 NaN and 8 Inf values \(as float32\)"),
    }
    bad = np.ones((3, 4, 4, 1), np.float32)
    bad[0, 0, 0], bad[1, 1, 1], bad[2, 2, 2] = np.nan, np.nan, -np.inf
    cases["nan.npy"] = (bad, r"holds 2 NaN and 1 Inf values \(as float32\) out of 48")
    for name, (array, pattern) in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(ValueError, match=rf"{re.escape(name)}: {pattern}"):
            load_array(tmp_path / name)
    np.savez(tmp_path / "keyed.npz", frames=bad)
    with pytest.raises(ValueError, match=r"keyed\.npz \(key 'frames'\): holds 2 NaN"):
        load_array(tmp_path / "keyed.npz", key="frames")

    with pytest.raises(ValueError, match=r"rank2\.npy: a \.npy file holds a single array"):
        load_array(tmp_path / "rank2.npy", key="x")
    (tmp_path / "broken.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"broken\.npy: not a readable \.npy array"):
        load_array(tmp_path / "broken.npy")
    (tmp_path / "broken.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"broken\.npz: not a readable \.npz archive"):
        load_array(tmp_path / "broken.npz")
    np.save(tmp_path / "plain.npy", bad)
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match=r"plain\.npz: holds a single \.npy array"):
        load_array(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="path must be a str or path-like"):
        load_array(3)
    with pytest.raises(ValueError, match="key must be a str or None"):
        load_array(tmp_path / "keyed.npz", key=0)


# ------------------------------------------------------------------ normalisation


def test_normalization_methods():
    rng = np.random.default_rng(0)
    train = (rng.random((4, 5, 3, 3, 2)) * [2.0, 50.0] + [-1.0, 10.0]).astype(np.float32)
    minmax = Normalization("minmax").fit(train)
    scaled = minmax.transform(train)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled.min(axis=(0, 1, 2, 3)), 0.0, atol=1e-6)
    np.testing.assert_allclose(scaled.max(axis=(0, 1, 2, 3)), 1.0, atol=1e-6)
    assert minmax.to_config()["min"] == [float(v) for v in train.min(axis=(0, 1, 2, 3))]

    zscore = Normalization("zscore").fit(train)
    scaled = zscore.transform(train)
    np.testing.assert_allclose(scaled.mean(axis=(0, 1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(axis=(0, 1, 2, 3)), 1.0, atol=1e-5)
    np.testing.assert_allclose(zscore.statistics["std"], train.std(axis=(0, 1, 2, 3)), rtol=1e-5)

    rates = np.abs(train)
    log1p = Normalization("log1p").fit(rates)
    scaled = log1p.transform(rates)
    np.testing.assert_allclose(scaled.max(axis=(0, 1, 2, 3)), 1.0, rtol=1e-6)
    expected = np.log1p(rates) / np.log1p(rates.max(axis=(0, 1, 2, 3)))
    np.testing.assert_allclose(scaled, expected, rtol=1e-6)
    assert log1p.transform(np.zeros((1, 2))).tolist() == [[0.0, 0.0]]

    none = Normalization("none").fit(train)
    np.testing.assert_array_equal(none.transform(train), train)
    assert none.to_config() == {"method": "none", "channels": 2}

    for norm, data in ((minmax, train), (zscore, train), (log1p, rates), (none, train)):
        np.testing.assert_allclose(norm.inverse(norm.transform(data)), data, rtol=1e-5, atol=1e-5)
        wide = data.astype(np.float64)  # float64 stays float64 and inverts to ~1e-12
        assert norm.transform(wide).dtype == np.float64
        np.testing.assert_allclose(norm.inverse(norm.transform(wide)), wide, rtol=1e-12)
    # Integer input becomes float32.
    assert minmax.transform(np.ones((2, 2), np.uint8)).dtype == np.float32


@pytest.mark.parametrize("method", NORMALIZATION_METHODS)
def test_normalization_config_json_round_trip(method):
    train = np.abs(_frames(3, 4, 4, 3)) + np.float32(0.1)
    norm = Normalization(method).fit(train)
    config = json.loads(json.dumps(norm.to_config()))
    restored = Normalization.from_config(config)
    assert restored == norm and restored.to_config() == norm.to_config()
    assert restored.statistics == norm.statistics  # exact floats through JSON
    other = _frames(2, 4, 4, 3, seed=5)
    np.testing.assert_array_equal(restored.transform(other), norm.transform(other))
    np.testing.assert_array_equal(restored.inverse(other), norm.inverse(other))
    unfitted = Normalization.from_config(json.loads(json.dumps(Normalization(method).to_config())))
    assert not unfitted.fitted and unfitted.method == method
    assert "from_config" in repr(norm)


def test_normalization_errors():
    with pytest.raises(ValueError, match=r"method must be one of .*received method='l2'"):
        Normalization("l2")
    data = _frames(3, 4, 4, 2)
    negative = data.copy()
    negative[0, 0, 0, 1] = -2.5
    with pytest.raises(ValueError, match=r"log1p needs non-negative data; .* -2\.5 \(channel 1\)"):
        Normalization("log1p").fit(negative)
    with pytest.raises(ValueError, match="transform: log1p needs non-negative data; minimum"):
        Normalization("log1p").fit(data).transform(negative)
    constant = data.copy()
    constant[..., 1] = 7.0
    for method in ("minmax", "zscore"):
        with pytest.raises(ValueError, match=rf"{method} cannot scale channel\(s\) \[1\]"):
            Normalization(method).fit(constant)
    with pytest.raises(ValueError, match=r"log1p cannot scale channel\(s\) \[0\]"):
        Normalization("log1p").fit(np.zeros((3, 2)) + [0.0, 1.0])
    with pytest.raises(ValueError, match="fit: the array holds 1 NaN/Inf"):
        Normalization("minmax").fit(np.array([[0.0], [np.inf]]))
    with pytest.raises(ValueError, match="fit: the array is empty"):
        Normalization("minmax").fit(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="fit: dtype <U1 is not numeric"):
        Normalization("minmax").fit(np.array(["a"]))
    unfitted_none = Normalization.from_config({"method": "none"})  # needs no statistics
    np.testing.assert_array_equal(unfitted_none.inverse(data), data)
    with pytest.raises(ValueError, match=r"transform: this Normalization\('zscore'\) is not fitt"):
        Normalization("zscore").transform(data)
    with pytest.raises(ValueError, match=r"inverse: expected 2 channels .* shape \(3, 4, 4, 1\)"):
        Normalization("minmax").fit(data).inverse(data[..., :1])

    fitted = Normalization("minmax").fit(data).to_config()
    bad_configs = {
        "config must be a dict": [1],
        "method must be one of": {"method": "max"},
        r"must have keys \['channels', 'max', 'method', 'min'\]": {**fitted, "mean": [0, 0]},
        r"config\['max'\] must be a list of 2 numbers": {**fitted, "max": [1.0]},
        r"config\['min'\] holds nan, not a finite number": {**fitted, "min": [0.0, float("nan")]},
        r"config\['min'\] holds '0', not a finite number": {**fitted, "min": ["0", 0.0]},
        r"minmax cannot scale channel\(s\) \[0\]": {**fitted, "min": [2.0, 0.0], "max": [1.0, 1]},
        "channels must be >= 1": {**fitted, "channels": 0},
    }
    for pattern, config in bad_configs.items():
        with pytest.raises(ValueError, match=pattern):
            Normalization.from_config(config)


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(NORMALIZATION_METHODS),
    data=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=4),
        elements=st.floats(-1e3, 1e3, allow_nan=False, width=64),
    ),
)
def test_normalization_inverse_property(method, data):
    if method == "log1p":
        data = np.abs(data)
    norm = Normalization(method)
    axes = tuple(range(data.ndim - 1))
    scale = {  # what each method divides by (zscore: std, which can underflow to 0)
        "none": np.ones(1),
        "minmax": data.max(axis=axes) - data.min(axis=axes),
        "zscore": data.std(axis=axes),
        "log1p": data.max(axis=axes),
    }[method]
    if np.any(scale == 0):
        with pytest.raises(ValueError, match="cannot scale channel"):
            norm.fit(data)
        return
    norm.fit(data)
    restored = norm.inverse(norm.transform(data))
    np.testing.assert_allclose(restored, data, rtol=1e-9, atol=1e-9 * (1 + np.abs(data).max()))
    again = Normalization.from_config(json.loads(json.dumps(norm.to_config())))
    np.testing.assert_array_equal(again.transform(data), norm.transform(data))


# ------------------------------------------------------------------ windows


def test_array_windows_series_and_sequences():
    series = _frames(20, 3, 3, 2)
    for got, want in zip(
        array_windows(series, 4, 6, 3), sliding_windows(series, 4, 6, 3), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    sequences = _indexed_sequences(3, 12)
    past, future = array_windows(sequences, 4, 5, stride=2)
    # (12 - 9) // 2 + 1 = 2 windows per sequence, sequence-major.
    assert past.shape == (6, 4, 2, 3, 1) and future.shape == (6, 5, 2, 3, 1)
    np.testing.assert_array_equal(past[:, 0, 0, 0, 0], [0, 2, 1000, 1002, 2000, 2002])
    np.testing.assert_array_equal(future[:, -1, 0, 0, 0], [8, 10, 1008, 1010, 2008, 2010])
    past, future = array_windows(sequences, 6, 6)  # T == T_in + T_out: one window each
    assert len(past) == 3
    np.testing.assert_array_equal(np.concatenate([past, future], axis=1), sequences)
    with pytest.raises(ValueError, match=r"sequences have 12 frames; .* 10 \+ 5 needs 15"):
        array_windows(sequences, 10, 5)
    with pytest.raises(ValueError, match=r"rank 4, \(T, H, W, C\), or rank 5.*\(rank 3\)"):
        array_windows(np.zeros((5, 4, 4)), 2, 2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        array_windows(sequences, 2, 2, stride=0)
    with pytest.raises(ValueError, match=r"needs 15 frames; received 12 frames"):
        array_windows(series[:12], 10, 5)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 3),
    t=st.integers(1, 25),
    input_frames=st.integers(1, 8),
    output_frames=st.integers(1, 8),
    stride=st.integers(1, 6),
    series=st.booleans(),
)
def test_array_windows_properties(n, t, input_frames, output_frames, stride, series):
    array = _indexed_sequences(n, t)
    if series:
        array = array[0]
    length = input_frames + output_frames
    if t < length:
        with pytest.raises(ValueError, match=f"{length}"):
            array_windows(array, input_frames, output_frames, stride)
        return
    past, future = array_windows(array, input_frames, output_frames, stride)
    per_sequence = (t - length) // stride + 1
    count = per_sequence * (1 if series else n)
    assert past.shape == (count, input_frames, 2, 3, 1)
    assert future.shape == (count, output_frames, 2, 3, 1)
    video = np.concatenate([past, future], axis=1)[:, :, 0, 0, 0]
    sequence, frame = np.divmod(video, 1000)
    # Each window: one sequence, consecutive frames, starting at 0, stride, 2 * stride, ...
    assert np.all(sequence == sequence[:, :1])
    assert np.all(np.diff(frame, axis=1) == 1)
    starts = np.tile(np.arange(per_sequence) * stride, 1 if series else n)
    np.testing.assert_array_equal(frame[:, 0], starts)
    np.testing.assert_array_equal(
        sequence[:, 0], np.repeat(np.arange(count // per_sequence), per_sequence)
    )
    assert frame[:, -1].max() < t


# ------------------------------------------------------------------ splits


def test_split_sequences():
    split = split_sequences(20, validation_fraction=0.2, test_fraction=0.1, seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [14, 4, 2]
    everything = np.concatenate(list(split.values()))
    np.testing.assert_array_equal(np.sort(everything), np.arange(20))  # disjoint and complete
    assert all(np.all(np.diff(v) > 0) for v in split.values())
    again = split_sequences(20, validation_fraction=0.2, test_fraction=0.1, seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = split_sequences(20, validation_fraction=0.2, test_fraction=0.1, seed=4)
    assert not np.array_equal(split["val"], other["val"])
    tiny = split_sequences(3, validation_fraction=0.1)  # a fraction > 0 keeps at least one
    assert [len(tiny[k]) for k in ("train", "val", "test")] == [2, 1, 0]
    with pytest.raises(ValueError, match=r"1 sequences are too few to split off"):
        split_sequences(1, validation_fraction=0.1)
    with pytest.raises(ValueError, match=r"validation_fraction must be a number in \[0, 1\)"):
        split_sequences(10, validation_fraction=1.0)
    with pytest.raises(ValueError, match="test_fraction must be a number"):
        split_sequences(10, test_fraction=-0.1)
    with pytest.raises(ValueError, match=r"validation_fraction \+ test_fraction must be < 1"):
        split_sequences(10, validation_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        split_sequences(10, seed=-1)


def test_split_series_blocks():
    assert split_series(100, 0.2, 0.1) == {"train": (0, 70), "val": (70, 90), "test": (90, 100)}
    assert split_series(50, 0.1) == {"train": (0, 45), "val": (45, 50), "test": (50, 50)}
    assert split_series(10, 0.0) == {"train": (0, 10), "val": (10, 10), "test": (10, 10)}
    with pytest.raises(ValueError, match="2 frames are too few"):
        split_series(2, 0.3, 0.3)
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        split_series(0)


def test_series_windows_never_cross_blocks():
    series = _indexed_sequences(1, 60)[0]  # value = frame index
    kwargs = {"input_frames": 3, "output_frames": 4, "validation_fraction": 0.2}
    kwargs.update(test_fraction=0.2, normalization="none")
    blocks = split_series(60, 0.2, 0.2)
    for split, (start, stop) in blocks.items():
        past, future, _ = prepare_arrays(series, split, **kwargs)
        frames = np.concatenate([past, future], axis=1)[:, :, 0, 0, 0]
        assert frames.min() == start and frames.max() == stop - 1
        assert len(frames) == (stop - start - 7) + 1


# ------------------------------------------------------------------ datasets


def test_normalization_fitted_on_train_sequences_only():
    rng = np.random.default_rng(0)
    data = rng.random((10, 8, 3, 3, 2)).astype(np.float32)
    split = split_sequences(10, validation_fraction=0.3, seed=1)
    data[split["val"]] *= 10.0  # validation data on another scale: statistics must differ
    for method in ("minmax", "zscore", "log1p"):
        past, future, norm = prepare_arrays(
            data,
            "val",
            input_frames=3,
            output_frames=5,
            normalization=method,
            validation_fraction=0.3,
            seed=1,
        )
        train_only = Normalization(method).fit(data[split["train"]])
        on_all = Normalization(method).fit(data)
        assert norm == train_only and norm != on_all
        # The validation windows are the train-fitted transform of the validation sequences.
        expected = train_only.transform(data[split["val"]])
        np.testing.assert_array_equal(past, expected[:, :3])
        np.testing.assert_array_equal(future, expected[:, 3:])
        assert past.max() > 1.5 if method != "zscore" else past.mean() > 3  # out of train range
        np.testing.assert_allclose(norm.inverse(future), data[split["val"]][:, 3:], rtol=1e-5)
    # A fitted Normalization (e.g. from a model's sidecar) is used as it is.
    given = Normalization.from_config(
        {"method": "minmax", "channels": 2, "min": [0, 0], "max": [2, 4]}
    )
    past, _, norm = prepare_arrays(
        data,
        "train",
        input_frames=3,
        output_frames=5,
        normalization=given,
        validation_fraction=0.3,
        seed=1,
    )
    assert norm is given
    np.testing.assert_allclose(past, data[split["train"]][:, :3] / [2, 4], rtol=1e-6)


def test_normalization_fitted_on_train_block_of_series():
    trend = np.linspace(0, 10, 40, dtype=np.float32)[:, None, None, None]
    series = trend + _frames(40, 3, 3, 1)  # later frames larger: train-only statistics differ
    _, _, norm = prepare_arrays(
        series,
        "test",
        input_frames=2,
        output_frames=2,
        test_fraction=0.25,
        validation_fraction=0.25,
    )
    train_block = series[slice(*split_series(40, 0.25, 0.25)["train"])]
    assert norm == Normalization("minmax").fit(train_block)
    assert norm != Normalization("minmax").fit(series)


def test_array_dataset_matches_prepare_arrays(tmp_path):
    data = _frames(12, 6, 4, 4, 1)
    np.savez(tmp_path / "data.npz", frames=data, other=data[:1])
    kwargs = {"key": "frames", "input_frames": 2, "output_frames": 3, "stride": 1}
    kwargs.update(normalization="zscore", validation_fraction=0.25, seed=2)
    file = tmp_path / "data.npz"
    val, norm = array_dataset(file, "validation", batch_size=4, **kwargs)
    past, future, norm_np = prepare_arrays(file, "val", **kwargs)
    assert norm == norm_np and len(past) == 3 * 2  # 3 sequences x (6 - 5) // 1 + 1 = 2 windows
    assert val.cardinality().numpy() == 2
    assert [tuple(s.shape) for s in val.element_spec] == [(None, 2, 4, 4, 1), (None, 3, 4, 4, 1)]
    batches = list(val.as_numpy_iterator())
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]), past, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([b[1] for b in batches]), future, rtol=1e-6)

    # Train: shuffled (default), same windows as prepare_arrays, same normalisation as val.
    train, train_norm = array_dataset(file, "train", batch_size=5, cache=True, **kwargs)
    assert train_norm == norm
    past_t, future_t, _ = prepare_arrays(file, "train", **kwargs)
    epoch = [np.concatenate(parts) for parts in zip(*train.as_numpy_iterator(), strict=True)]
    order = np.lexsort(epoch[0].reshape(len(epoch[0]), -1).T)
    expected = np.lexsort(past_t.reshape(len(past_t), -1).T)
    np.testing.assert_allclose(epoch[0][order], past_t[expected], rtol=1e-6)
    np.testing.assert_allclose(epoch[1][order], future_t[expected], rtol=1e-6)
    assert not np.array_equal(epoch[0], past_t)  # shuffled
    dropped, _ = array_dataset(file, "train", batch_size=5, drop_remainder=True, **kwargs)
    assert dropped.cardinality().numpy() == len(past_t) // 5


def test_array_dataset_errors(tmp_path):
    sequences = _frames(4, 6, 3, 3, 1)
    np.save(tmp_path / "short.npy", sequences)
    windows = {"input_frames": 4, "output_frames": 2}
    with pytest.raises(ValueError, match=r"short\.npy: sequences have 6 frames, too few .* = 7"):
        array_dataset(tmp_path / "short.npy", input_frames=4, output_frames=3)
    np.save(tmp_path / "series.npy", sequences[0])
    with pytest.raises(ValueError, match=r"series\.npy: the series has 6 frames, too few"):
        prepare_arrays(tmp_path / "series.npy", input_frames=4, output_frames=3)
    long = _frames(40, 3, 3, 1)
    with pytest.raises(ValueError, match=r"array: the 'val' block of the series \(frames 36 to 40"):
        prepare_arrays(long, "val", **windows)
    with pytest.raises(ValueError, match=r"array: split 'test' is empty \(test_fraction=0\)"):
        prepare_arrays(long, "test", **windows)
    with pytest.raises(ValueError, match=r"split 'val' is empty \(validation_fraction=0\)"):
        array_dataset(sequences, "val", validation_fraction=0.0, **windows)
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'test'\)"):
        array_dataset(sequences, "dev", **windows)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.npy' not found"):
        array_dataset(tmp_path / "nowhere.npy", **windows)
    with pytest.raises(ValueError, match="key applies to files only"):
        prepare_arrays(sequences, key="frames", **windows)
    with pytest.raises(ValueError, match=r"fewer than batch_size=16 with drop_remainder"):
        array_dataset(sequences, drop_remainder=True, **windows)
    with pytest.raises(ValueError, match="normalization must be one of"):
        prepare_arrays(sequences, normalization=None, **windows)
    with pytest.raises(ValueError, match="method must be one of"):
        prepare_arrays(sequences, normalization="unit", **windows)
    two = Normalization("minmax").fit(_frames(2, 2, 2))
    with pytest.raises(ValueError, match=r"array: has 1 channels but the given Normalization"):
        prepare_arrays(sequences, normalization=two, **windows)
    with pytest.raises(ValueError, match=r"array: wrong rank 2"):
        prepare_arrays(np.zeros((3, 3)), **windows)
    bad = sequences.copy()
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"array: holds 1 NaN and 0 Inf"):
        array_dataset(bad, **windows)
    with pytest.raises(ValueError, match="input_frames must be >= 1"):
        prepare_arrays(sequences, input_frames=0, output_frames=2)
    with pytest.raises(ValueError, match="source must be a file path or a NumPy array; .* list"):
        prepare_arrays(sequences.tolist(), **windows)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        array_dataset(sequences, batch_size=0, **windows)
