"""Tests for Moving MNIST (kerastp.data.moving_mnist, mnist_files, glyphs, standard_set):
protocol exactness, readers, caching and pipelines."""

import gzip
import math
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from kerastp.data import (
    MnistUnavailableError,
    MovingMNIST,
    glyphs,
    load_mnist_digits,
    load_mnist_test_seq,
    mnist_files,
    moving_mnist_dataset,
    procedural_digits,
    resolve_mnist_path,
    split_frames,
    standard_set,
    standard_test_set,
)
from kerastp.data import moving_mnist as mm

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture
def mnist_dir():
    if not (SHARED_MNIST / "mnist.npz").is_file():
        pytest.skip(f"shared MNIST data not found at {SHARED_MNIST}")
    return SHARED_MNIST


@pytest.fixture
def isolated_env(monkeypatch, tmp_path):
    """No KERASTP_MNIST, and a Keras home in tmp_path so the real cache is never used."""
    monkeypatch.delenv("KERASTP_MNIST", raising=False)
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


def _random_digits(n=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def _write_npz(path, x_train=None, x_test=None):
    x_train = _random_digits(5, 1) if x_train is None else x_train
    x_test = _random_digits(3, 2) if x_test is None else x_test
    np.savez(path, x_train=x_train, y_train=np.zeros(len(x_train), np.uint8), x_test=x_test)
    return path


def _idx_bytes(images, magic=0x803):
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, *images.shape))
    return header + images.tobytes()


# ------------------------------------------------------------------ trajectory protocol


def _reference_offsets(u, num_frames, step, canvas):
    """OpenSTL's scalar trajectory loop for one digit, from the draws (x, y, theta / 2 pi)."""
    x, y, theta = float(u[0]), float(u[1]), float(u[2]) * 2 * math.pi
    v_y, v_x = math.sin(theta), math.cos(theta)
    tops, lefts = [], []
    for _ in range(num_frames):
        y = y + v_y * step
        x = x + v_x * step
        if x <= 0:
            x = 0.0
            v_x = -v_x
        if x >= 1.0:
            x = 1.0
            v_x = -v_x
        if y <= 0:
            y = 0.0
            v_y = -v_y
        if y >= 1.0:
            y = 1.0
            v_y = -v_y
        tops.append(int(canvas * y))
        lefts.append(int(canvas * x))
    return tops, lefts


def _reference_video(digits, u, image_size, num_frames, step):
    """Per-sequence, per-digit scalar reference of the whole generator."""
    n, num_digits = u.shape[:2]
    canvas = image_size - 28
    video = np.zeros((n, num_frames, image_size, image_size), np.uint8)
    for b in range(n):
        for d in range(num_digits):
            tops, lefts = _reference_offsets(u[b, d], num_frames, step, canvas)
            digit = digits[int(u[b, d, 3] * len(digits))]
            for t in range(num_frames):
                window = video[b, t, tops[t] : tops[t] + 28, lefts[t] : lefts[t] + 28]
                np.maximum(window, digit, out=window)
    return video[..., None]


@pytest.mark.parametrize(
    ("image_size", "num_digits", "num_frames", "step"), [(64, 2, 20, 0.1), (40, 3, 25, 0.23)]
)
def test_generate_matches_scalar_reference(image_size, num_digits, num_frames, step):
    digits = _random_digits(11)
    gen = MovingMNIST(digits, image_size, num_digits, num_frames, step)
    video = gen.generate(12, np.random.default_rng(5))
    # The documented consumption: one draw of shape (n, num_digits, 4).
    u = np.random.default_rng(5).random((12, num_digits, 4))
    expected = _reference_video(digits, u, image_size, num_frames, step)
    assert video.dtype == np.uint8
    assert video.shape == (12, num_frames, image_size, image_size, 1)
    np.testing.assert_array_equal(video, expected)


def test_trajectory_golden_bounce():
    gen = MovingMNIST(_random_digits(1), num_digits=1, num_frames=4)
    # x = 0.95 moving right (theta = 0): 1.05 -> clamp to 1 and flip, then 0.9, 0.8, 0.7.
    # y = 0.5 with v_y = sin(0) = 0 stays at 0.5 -> int(36 * 0.5) = 18.
    top, left = gen.trajectories(np.array([[[0.95, 0.5, 0.0, 0.0]]]))
    assert left[0, :, 0].tolist() == [36, 32, 28, 25]
    assert top[0, :, 0].tolist() == [18, 18, 18, 18]
    # y = 0.02 moving up (theta = 3/4 turn: v_y = -1): -0.08 -> 0, then 0.1, 0.2, 0.3.
    top, left = gen.trajectories(np.array([[[0.5, 0.02, 0.75, 0.0]]]))
    assert top[0, :, 0].tolist() == [0, 3, 7, 10]


def test_offsets_stay_in_canvas_and_reach_both_walls():
    gen = MovingMNIST(_random_digits(3), num_frames=40, step_length=0.3)
    u = np.random.default_rng(0).random((500, 2, 4))
    top, left = gen.trajectories(u)
    for offsets in (top, left):
        assert offsets.dtype == np.int32
        assert offsets.min() == 0 and offsets.max() == 36
    # Without a bounce every step would move by 0.3 * 36 ~ 10.8 px along the axis of travel.
    step = np.abs(np.diff(left, axis=1))
    assert step.max() <= 11


def test_paste_uses_elementwise_max():
    flat = np.full((28, 28), 100, np.uint8)
    checker = np.zeros((28, 28), np.uint8)
    checker[::2, ::2] = 200
    digits = np.stack([flat, checker])
    gen = MovingMNIST(digits, image_size=30, num_digits=2, num_frames=3)
    rng_seed = 3
    video = gen.generate(40, np.random.default_rng(rng_seed))[..., 0]
    u = np.random.default_rng(rng_seed).random((40, 2, 4))
    top, left = gen.trajectories(u)
    index = (u[..., 3] * 2).astype(int)
    layers = np.zeros((2, *video.shape), np.int32)
    for b in range(40):
        for d in range(2):
            for t in range(3):
                r, c = top[b, t, d], left[b, t, d]
                layers[d, b, t, r : r + 28, c : c + 28] = digits[index[b, d]]
    np.testing.assert_array_equal(video, np.maximum(layers[0], layers[1]))
    mixed = index[:, 0] != index[:, 1]
    assert mixed.any()
    # A sum or an overwrite would differ from the max on overlapping pixels.
    assert not np.array_equal(video[mixed], (layers[0] + layers[1])[mixed])
    assert set(np.unique(video[mixed]).tolist()) <= {0, 100, 200}


def test_generate_deterministic_and_prefix_stable():
    gen = MovingMNIST(_random_digits(9), image_size=36, num_frames=6)
    a = gen.generate(10, np.random.default_rng(1))
    b = gen.generate(10, np.random.default_rng(1))
    c = gen.generate(10, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(gen.generate(4, 1), a[:4])  # an int seed works too
    assert gen.generate(0, 1).shape == (0, 6, 36, 36, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 28}, "image_size"),
        ({"image_size": 64.0}, "image_size"),
        ({"num_digits": 0}, "num_digits"),
        ({"num_frames": 0}, "num_frames"),
        ({"step_length": 0.0}, "step_length"),
    ],
)
def test_generator_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MovingMNIST(_random_digits(2), **kwargs)


def test_generator_rejects_bad_digits():
    with pytest.raises(ValueError, match="uint8"):
        MovingMNIST(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="shape"):
        MovingMNIST(np.zeros((2, 28, 20), np.uint8))
    with pytest.raises(ValueError, match="n must be >= 0"):
        MovingMNIST(_random_digits(2)).generate(-1, 0)


# ------------------------------------------------------------------ procedural digits


def test_procedural_digits_look_like_mnist_and_are_deterministic():
    start = time.perf_counter()
    a = procedural_digits(300, seed=4)
    assert time.perf_counter() - start < 20  # generous: catches a pathological slowdown only
    assert a.shape == (300, 28, 28) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, procedural_digits(300, seed=4))
    assert not np.array_equal(a, procedural_digits(300, seed=5))
    # Bright digits on black, centred by mass, not touching the border much.
    assert (a == 0).mean() > 0.5
    assert np.all(a.reshape(300, -1).max(axis=1) >= 200)
    rows = np.arange(28)
    mass = a.sum(axis=(1, 2)).astype(np.float64)
    com_r = (a.sum(axis=2) * rows).sum(axis=1) / mass
    com_c = (a.sum(axis=1) * rows).sum(axis=1) / mass
    assert np.all(np.abs(com_r - 13.5) < 3) and np.all(np.abs(com_c - 13.5) < 3)
    assert a[:, 0, :].mean() < 5 and a[:, :, 0].mean() < 5
    # Different digits differ: far from a single repeated glyph.
    assert len({img.tobytes() for img in a}) == 300


def test_glyph_pool_margins_and_bitmap_font_fallback(monkeypatch):
    pool = glyphs._glyph_pool()
    assert pool.shape[-2:] == (glyphs._GLYPH_CANVAS, glyphs._GLYPH_CANVAS)
    # Empty borders: clamped bilinear sampling then equals zero padding.
    for border in (pool[..., :2, :], pool[..., -2:, :], pool[..., :2], pool[..., -2:]):
        assert border.max() < 1e-3
    bitmap = glyphs.ImageFont.load_default_imagefont()

    def old_pillow(size=None):  # Pillow < 10.1 has no size argument
        if size is not None:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return bitmap

    monkeypatch.setattr(glyphs.ImageFont, "load_default", old_pillow)
    glyphs._glyph_pool.cache_clear()
    try:
        fallback = glyphs._glyph_pool()
        digits = glyphs._procedural_cached.__wrapped__(40, 0)
    finally:
        glyphs._glyph_pool.cache_clear()
    assert fallback.shape == pool.shape and not np.array_equal(fallback, pool)
    assert fallback[..., :2, :].max() < 1e-3
    assert digits.shape == (40, 28, 28) and np.all(digits.reshape(40, -1).max(axis=1) >= 200)


def test_procedural_digits_returns_copies_of_the_cache():
    a = procedural_digits(50, seed=9)
    a[:] = 0
    assert procedural_digits(50, seed=9).any()
    with pytest.raises(ValueError, match="seed"):
        procedural_digits(5, seed=-1)
    with pytest.raises(ValueError, match="n must be"):
        procedural_digits(0)


# ------------------------------------------------------------------ MNIST location


def test_resolve_explicit_paths(isolated_env, tmp_path):
    npz = _write_npz(tmp_path / "mnist.npz")
    assert resolve_mnist_path(npz) == npz
    assert resolve_mnist_path(str(tmp_path)) == npz
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    (idx_dir / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(_random_digits(2)))
    assert resolve_mnist_path(idx_dir) == idx_dir
    missing = tmp_path / "nope" / "mnist.npz"
    with pytest.raises(FileNotFoundError, match="nope"):
        resolve_mnist_path(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        resolve_mnist_path(empty)


def test_resolution_order(isolated_env, monkeypatch, tmp_path):
    explicit = _write_npz(tmp_path / "explicit.npz")
    env = _write_npz(tmp_path / "env.npz")
    cached = isolated_env / "datasets" / "mnist.npz"
    cached.parent.mkdir()
    _write_npz(cached)
    assert resolve_mnist_path(allow_download=False) == cached
    monkeypatch.setenv("KERASTP_MNIST", str(env))
    assert resolve_mnist_path(allow_download=False) == env
    assert resolve_mnist_path(explicit, allow_download=False) == explicit
    # A missing explicit path or env var raises; it never falls through to the cache.
    with pytest.raises(FileNotFoundError, match="missing-explicit"):
        resolve_mnist_path(tmp_path / "missing-explicit.npz")
    monkeypatch.setenv("KERASTP_MNIST", str(tmp_path / "missing-env.npz"))
    with pytest.raises(FileNotFoundError, match="KERASTP_MNIST.*missing-env"):
        resolve_mnist_path()


def _check_offline_message(error):
    message = str(error.value)
    for needle in ("path=", "KERASTP_MNIST", "datasets", "mnist.npz", "internet"):
        assert needle in message
    assert 'source="procedural"' in message
    assert "--mnist-path" in message and "--data procedural" in message  # the CLI spellings
    assert "Looked at" in message
    assert isinstance(error.value, FileNotFoundError)


def test_offline_error_without_download(isolated_env, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the network must not be touched")

    monkeypatch.setattr(mnist_files, "_probe_connection", forbidden)
    monkeypatch.setattr(mnist_files, "_download_mnist", forbidden)
    start = time.perf_counter()
    with pytest.raises(MnistUnavailableError) as error:
        resolve_mnist_path(allow_download=False)
    assert time.perf_counter() - start < 2
    _check_offline_message(error)
    assert str(isolated_env) in str(error.value)
    with pytest.raises(MnistUnavailableError):
        load_mnist_digits("test", allow_download=False)


def test_offline_error_when_probe_or_download_fails(isolated_env, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(mnist_files, "_probe_connection", lambda: False)
    monkeypatch.setattr(mnist_files, "_download_mnist", lambda: calls.append(1))
    with pytest.raises(MnistUnavailableError, match="no connection") as error:
        resolve_mnist_path()
    _check_offline_message(error)
    assert calls == []

    def broken_download():
        raise OSError("connection reset")

    monkeypatch.setattr(mnist_files, "_probe_connection", lambda: True)
    monkeypatch.setattr(mnist_files, "_download_mnist", broken_download)
    with pytest.raises(MnistUnavailableError, match="connection reset") as error:
        resolve_mnist_path()
    _check_offline_message(error)

    downloaded = _write_npz(tmp_path / "downloaded.npz")
    monkeypatch.setattr(mnist_files, "_download_mnist", lambda: downloaded)
    assert resolve_mnist_path() == downloaded


def test_probe_connection_is_local_and_fast():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert mnist_files._probe_connection("127.0.0.1", port, timeout=2.0)
    # The port is closed now: refused at once, no hang.
    start = time.perf_counter()
    assert not mnist_files._probe_connection("127.0.0.1", port, timeout=2.0)
    assert time.perf_counter() - start < 3


# ------------------------------------------------------------------ MNIST readers


def test_idx_reader_matches_npz(mnist_dir, isolated_env, tmp_path):
    from_npz = load_mnist_digits("test", mnist_dir / "mnist.npz")
    from_idx = load_mnist_digits("test", mnist_dir / "t10k-images-idx3-ubyte.gz")
    assert from_idx.shape == (10000, 28, 28) and from_idx.dtype == np.uint8
    np.testing.assert_array_equal(from_idx, from_npz)
    # A directory holding only the idx file works for its split, and only for its split.
    only_idx = tmp_path / "only_idx"
    only_idx.mkdir()
    (only_idx / "t10k-images-idx3-ubyte.gz").symlink_to(mnist_dir / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(load_mnist_digits("test", only_idx), from_npz)
    with pytest.raises(FileNotFoundError, match="train"):
        load_mnist_digits("train", only_idx)
    with pytest.raises(ValueError, match="test split"):
        load_mnist_digits("train", mnist_dir / "t10k-images-idx3-ubyte.gz")
    train = load_mnist_digits("train", mnist_dir)
    assert train.shape == (60000, 28, 28) and train.dtype == np.uint8


def test_idx_reader_checks(isolated_env, tmp_path):
    images = _random_digits(2)
    good = tmp_path / "my-images-idx3-ubyte.gz"
    good.write_bytes(gzip.compress(_idx_bytes(images)))
    np.testing.assert_array_equal(load_mnist_digits("test", good), images)
    # Same content under the official name fails the official MD5.
    fake = tmp_path / "t10k-images-idx3-ubyte.gz"
    fake.write_bytes(good.read_bytes())
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz.*MD5"):
        load_mnist_digits("test", fake)
    cases = {
        "labels-idx3-ubyte": (_idx_bytes(images, magic=0x801), "label file"),
        "bad-magic-idx3-ubyte": (_idx_bytes(images, magic=0x1234), "magic"),
        "truncated-idx3-ubyte": (_idx_bytes(images)[:-5], "truncated"),
        "short-idx3-ubyte": (b"\x00\x00", "too short"),
        "small-idx3-ubyte": (_idx_bytes(images[:, :10, :10]), "28x28"),
    }
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=match):
            load_mnist_digits("test", tmp_path / name)


def test_npz_reader_checks(isolated_env, tmp_path):
    x_test = _random_digits(3, 7)
    npz = _write_npz(tmp_path / "ok.npz", x_test=x_test)
    np.testing.assert_array_equal(load_mnist_digits("test", npz), x_test)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match="corrupt.npz"):
        load_mnist_digits("test", corrupt)
    floats = _write_npz(tmp_path / "floats.npz", x_test=np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="dtype float32"):
        load_mnist_digits("test", floats)
    shaped = _write_npz(tmp_path / "shaped.npz", x_test=np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        load_mnist_digits("test", shaped)
    keyless = tmp_path / "keyless.npz"
    np.savez(keyless, images=x_test)
    with pytest.raises(ValueError, match="x_test"):
        load_mnist_digits("test", keyless)
    with pytest.raises(ValueError, match="split"):
        load_mnist_digits("validation", npz)


def test_load_mnist_test_seq(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="cs.toronto.edu"):
        load_mnist_test_seq(tmp_path / "mnist_test_seq.npy")
    monkeypatch.setattr(standard_set, "_TEST_SEQ_SHAPE", (20, 3, 64, 64))
    raw = np.random.default_rng(0).integers(0, 256, (20, 3, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", raw)
    seq = load_mnist_test_seq(tmp_path)  # a directory works too
    assert seq.shape == (3, 20, 64, 64, 1) and seq.dtype == np.uint8
    np.testing.assert_array_equal(seq[1, 5, :, :, 0], raw[5, 1])
    np.save(tmp_path / "wrong.npy", raw[:, :, :32])
    with pytest.raises(ValueError, match="wrong.npy"):
        load_mnist_test_seq(tmp_path / "wrong.npy")


# ------------------------------------------------------------------ standard test set


@pytest.fixture
def small_standard(monkeypatch):
    """Shrinks the full set to 10 sequences in chunks of 4 so that the cache path is fast."""
    monkeypatch.setattr(standard_set, "_STANDARD_TOTAL", 10)
    monkeypatch.setattr(standard_set, "_STANDARD_CHUNK", 4)


def _expected_standard(digits, count, seed=0, chunk=4):
    gen = MovingMNIST(digits)
    parts = [
        gen.generate(chunk, np.random.default_rng([seed, c]))
        for c in range(math.ceil(count / chunk))
    ]
    return np.concatenate(parts)[:count]


def test_standard_test_set_protocol_and_prefix(small_standard):
    digits = procedural_digits(10000, seed=1)  # the val/test pool
    seven = standard_test_set(7, source="procedural")
    assert seven.shape == (7, 20, 64, 64, 1) and seven.dtype == np.uint8
    np.testing.assert_array_equal(seven, _expected_standard(digits, 7))
    np.testing.assert_array_equal(standard_test_set(3, source="procedural"), seven[:3])
    assert not np.array_equal(standard_test_set(3, source="procedural", seed=1), seven[:3])
    with pytest.raises(ValueError, match="num_sequences"):
        standard_test_set(11, source="procedural")
    with pytest.raises(ValueError, match="source"):
        standard_test_set(3, source="cifar")


def test_standard_test_set_uses_mnist_test_digits(mnist_dir, small_standard):
    digits = load_mnist_digits("test", mnist_dir)
    five = standard_test_set(5, path=mnist_dir)
    np.testing.assert_array_equal(five, _expected_standard(digits, 5))


def test_standard_test_set_cache(small_standard, tmp_path, monkeypatch):
    digits = procedural_digits(10000, seed=1)  # the val/test pool
    expected = _expected_standard(digits, 10)
    first = standard_test_set(10, source="procedural", cache_dir=tmp_path)
    np.testing.assert_array_equal(first, expected)
    npy = tmp_path / "moving_mnist_test_v1_procedural_seed0_n10.npy"
    sha = npy.with_suffix(".sha256")
    assert sorted(p.name for p in tmp_path.iterdir()) == [npy.name, sha.name]
    assert sha.read_text().split()[0] == standard_set._sha256(npy)

    def no_write(*args, **kwargs):
        raise AssertionError("the cached file should have been reused")

    with monkeypatch.context() as patch:
        patch.setattr(standard_set, "_write_cache", no_write)
        again = standard_test_set(10, source="procedural", cache_dir=tmp_path)
    assert isinstance(again, np.memmap)
    np.testing.assert_array_equal(again, expected)
    del first, again
    # A verified cache needs no digits: MNIST may be unavailable by now.
    with monkeypatch.context() as patch:
        patch.setattr(standard_set, "source_digits", no_write)
        standard_test_set(10, source="procedural", cache_dir=tmp_path)

    # Corruption: one flipped byte fails the checksum; the set is rebuilt with a warning.
    raw = bytearray(npy.read_bytes())
    raw[-1] ^= 0xFF
    npy.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="regenerating"):
        rebuilt = standard_test_set(10, source="procedural", cache_dir=tmp_path)
    np.testing.assert_array_equal(rebuilt, expected)
    assert sha.read_text().split()[0] == standard_set._sha256(npy)
    del rebuilt

    sha.unlink()
    with pytest.warns(UserWarning, match="checksum"):
        standard_test_set(10, source="procedural", cache_dir=tmp_path)
    assert sha.is_file()
    assert not list(tmp_path.glob("*.tmp"))

    # An unusable cache directory still returns the data, in memory, with a warning.
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="in memory"):
        in_memory = standard_test_set(10, source="procedural", cache_dir=blocker / "sub")
    np.testing.assert_array_equal(in_memory, expected)


def test_standard_test_set_default_cache_dir(small_standard, isolated_env):
    standard_test_set(10, source="procedural")
    assert (isolated_env / "datasets" / "kerastp").is_dir()
    assert list((isolated_env / "datasets" / "kerastp").glob("*.npy"))


def test_split_frames():
    seq = np.arange(2 * 5 * 2 * 2, dtype=np.uint8).reshape(2, 5, 2, 2, 1)
    past, future = split_frames(seq, input_frames=2, output_frames=3)
    assert past.dtype == future.dtype == np.float32
    assert past.shape == (2, 2, 2, 2, 1) and future.shape == (2, 3, 2, 2, 1)
    np.testing.assert_allclose(future[1, 0], seq[1, 2] / 255.0)
    with pytest.raises(ValueError, match="frames"):
        split_frames(seq, input_frames=3, output_frames=3)
    with pytest.raises(ValueError, match="uint8"):
        split_frames(seq.astype(np.float32), 2, 3)


# ------------------------------------------------------------------ tf.data pipeline


def _collect(dataset):
    pasts, futures = zip(*((p.numpy(), f.numpy()) for p, f in dataset), strict=True)
    return np.concatenate(pasts), np.concatenate(futures)


def test_dataset_spec_values_and_protocol():
    ds = moving_mnist_dataset(
        "procedural",
        batch_size=4,
        input_frames=3,
        output_frames=2,
        image_size=32,
        num_sequences=10,
        seed=7,
    )
    past_spec, future_spec = ds.element_spec
    assert tuple(past_spec.shape) == (4, 3, 32, 32, 1)
    assert tuple(future_spec.shape) == (4, 2, 32, 32, 1)
    assert past_spec.dtype.name == future_spec.dtype.name == "float32"
    assert int(ds.cardinality()) == 2  # known length: Keras shows progress, no warning
    past, future = _collect(ds)
    assert past.shape == (8, 3, 32, 32, 1)  # 10 sequences, remainder of 2 dropped
    assert 0.0 <= past.min() and past.max() <= 1.0 and past.max() > 0.5
    digits = procedural_digits(10000, seed=0)  # the train pool
    gen = MovingMNIST(digits, image_size=32, num_frames=5)
    video = gen.generate(mm._DATASET_CHUNK, np.random.default_rng([7, 0, 0, 1]))[:8] / 255.0
    np.testing.assert_allclose(past, video[:, :3], atol=1e-6)
    np.testing.assert_allclose(future, video[:, 3:], atol=1e-6)


def test_dataset_fresh_epochs_and_initial_epoch(monkeypatch):
    monkeypatch.setattr(mm, "_DATASET_CHUNK", 4)  # several chunks per epoch
    kwargs = dict(batch_size=3, input_frames=2, output_frames=2, image_size=32, num_sequences=9)
    ds = moving_mnist_dataset("procedural", **kwargs)
    epoch0, epoch1, epoch2 = (_collect(ds)[0] for _ in range(3))
    assert not np.array_equal(epoch0, epoch1)
    digits = procedural_digits(10000, seed=0)  # the train pool
    gen = MovingMNIST(digits, image_size=32, num_frames=4)
    chunks = [gen.generate(4, np.random.default_rng([0, 1, c, 1])) for c in range(3)]
    np.testing.assert_allclose(epoch1, np.concatenate(chunks)[:9, :2] / 255.0, atol=1e-6)
    resumed = moving_mnist_dataset("procedural", initial_epoch=2, **kwargs)
    np.testing.assert_array_equal(_collect(resumed)[0], epoch2)
    # The data do not depend on the batch size (chunks, not batches, carry the seed).
    other = moving_mnist_dataset("procedural", **{**kwargs, "batch_size": 2}, drop_remainder=False)
    assert other.element_spec[0].shape[0] is None
    batches = [p.shape[0] for p, _ in other]
    assert batches == [2, 2, 2, 2, 1]
    np.testing.assert_array_equal(_collect(other)[0], epoch1)  # its second pass: epoch 1
    # Validation data repeat by default so that val losses compare across epochs.
    val = moving_mnist_dataset("procedural", split="val", **kwargs)
    val_epoch = _collect(val)[0]
    np.testing.assert_array_equal(_collect(val)[0], val_epoch)
    test = moving_mnist_dataset("procedural", split="test", **kwargs)
    assert not np.array_equal(_collect(test)[0], val_epoch)


def test_keras_fit_draws_one_epoch_per_training_epoch(monkeypatch):
    import keras

    keys = []
    generate = MovingMNIST.generate

    def spy(self, n, rng):
        keys.append(tuple(rng.bit_generator.seed_seq.entropy))
        return generate(self, n, rng)

    monkeypatch.setattr(MovingMNIST, "generate", spy)
    kwargs = dict(batch_size=2, input_frames=1, output_frames=1, image_size=30, num_sequences=4)
    train = moving_mnist_dataset("procedural", seed=3, initial_epoch=5, **kwargs)
    val = moving_mnist_dataset("procedural", split="val", seed=3, **kwargs)
    model = keras.Sequential([keras.Input((1, 30, 30, 1)), keras.layers.Conv3D(1, 1)])
    model.compile(optimizer="sgd", loss="mse")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*ran out of data.*")
        history = model.fit(train, epochs=2, validation_data=val, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 2
    assert [k for k in keys if k[3] == 1] == [(3, 5, 0, 1), (3, 6, 0, 1)]
    assert {k for k in keys if k[3] == 2} == {(3, 0, 0, 2)}


def test_dataset_uses_real_mnist(mnist_dir):
    ds = moving_mnist_dataset(
        "mnist",
        split="test",
        batch_size=2,
        input_frames=1,
        output_frames=1,
        num_sequences=2,
        path=mnist_dir,
    )
    past, future = _collect(ds)
    digits = load_mnist_digits("test", mnist_dir)
    video = MovingMNIST(digits, num_frames=2).generate(
        mm._DATASET_CHUNK, np.random.default_rng([0, 0, 0, 3])
    )
    np.testing.assert_allclose(past, video[:2, :1] / 255.0, atol=1e-6)
    # Evaluation streams never replay the standard test set (same digits, same seed).
    standard = standard_test_set(2, path=mnist_dir)
    assert not np.array_equal(past, standard[:, :1] / 255.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "validation"}, "split"),
        ({"source": "cifar"}, "source"),
        ({"image_size": 20}, "image_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_sequences": 3, "batch_size": 4}, "drop_remainder"),
        ({"initial_epoch": -1}, "initial_epoch"),
    ],
)
def test_dataset_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        moving_mnist_dataset(**{"source": "procedural", **kwargs})


def test_moved_names_stay_reachable_from_moving_mnist():
    assert mm.standard_test_set is standard_set.standard_test_set
    assert mm.resolve_mnist_path is mnist_files.resolve_mnist_path
    with pytest.raises(AttributeError, match="no_such_name"):
        mm.no_such_name  # noqa: B018


def test_module_imports_without_tensorflow():
    code = (
        "import sys, kerastp.data.moving_mnist as m; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
