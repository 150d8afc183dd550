"""MotionCast and its warping: against NumPy references, by construction, and in TFLite."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastp import export, registry
from kerastp.layers.optical_flow import lucas_kanade
from kerastp.layers.warp import semi_lagrangian_displacements, warp
from kerastp.lite import LiteForecaster
from kerastp.models.motion_cast import MotionCast


def _warp_reference(image, flow, padding="zeros"):
    """Bilinear backward warping, one pixel at a time (the textbook definition)."""
    batch, height, width, channels = image.shape
    out = np.zeros_like(image, dtype=np.float64)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                sy, sx = y + flow[b, y, x, 0], x + flow[b, y, x, 1]
                y0, x0 = int(np.floor(sy)), int(np.floor(sx))
                fy, fx = sy - y0, sx - x0
                for yy, xx, weight in (
                    (y0, x0, (1 - fy) * (1 - fx)),
                    (y0, x0 + 1, (1 - fy) * fx),
                    (y0 + 1, x0, fy * (1 - fx)),
                    (y0 + 1, x0 + 1, fy * fx),
                ):
                    inside = 0 <= yy < height and 0 <= xx < width
                    if padding == "zeros" and not inside:
                        continue
                    yy, xx = min(max(yy, 0), height - 1), min(max(xx, 0), width - 1)
                    out[b, y, x] += weight * image[b, yy, xx]
    return out


def _trajectories_reference(velocity, steps):
    """pysteps' backward semi-Lagrangian scheme: D_k = D_{k-1} + v(p + D_{k-1})."""
    displacement = velocity.astype(np.float64)
    result = [displacement]
    for _ in range(steps - 1):
        displacement = displacement + _warp_reference(velocity, displacement, padding="border")
        result.append(displacement)
    return result


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_warp_matches_the_reference(padding):
    rng = np.random.default_rng(0)
    image = rng.random((2, 7, 9, 3)).astype(np.float32)
    # Fractional displacements, some reaching outside the frame.
    flow = rng.uniform(-3.0, 3.0, (2, 7, 9, 2)).astype(np.float32)
    got = _numpy(warp(image, flow, padding=padding))
    np.testing.assert_allclose(got, _warp_reference(image, flow, padding), atol=1e-5)


def test_warp_by_whole_pixels_is_a_shift_with_zeros_flowing_in():
    image = np.arange(1, 26, dtype=np.float32).reshape(1, 5, 5, 1)
    flow = np.zeros((1, 5, 5, 2), np.float32)
    np.testing.assert_array_equal(_numpy(warp(image, flow)), image)
    flow[..., 0] = -2.0  # each pixel reads two rows up: content moves down by two
    expected = np.zeros_like(image)
    expected[:, 2:] = image[:, :-2]
    np.testing.assert_array_equal(_numpy(warp(image, flow)), expected)
    with pytest.raises(ValueError, match="padding"):
        warp(image, flow, padding="wrap")


def test_warp_gradient_with_respect_to_the_flow_is_the_image_slope():
    rows = np.arange(6, dtype=np.float32)
    image = np.tile((rows**2)[None, :, None, None], (1, 1, 6, 1))  # I(y, x) = y^2
    flow = tf.Variable(np.full((1, 6, 6, 2), 0.25, np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(warp(tf.constant(image), flow)[:, 1:4, 1:4])
    grad = tape.gradient(total, flow).numpy()
    # d/dflow_row of the bilinear sample at y + 0.25 is I(y0 + 1) - I(y0) = 2 y0 + 1.
    np.testing.assert_allclose(grad[0, 1:4, 1:4, 0], (2 * rows[1:4] + 1)[:, None] * np.ones(3))
    np.testing.assert_allclose(grad[0, 1:4, 1:4, 1], 0.0, atol=1e-6)
    assert not grad[0, 0].any() and not grad[0, 4:].any()  # only the summed pixels


def test_semi_lagrangian_trajectories_match_the_reference():
    rng = np.random.default_rng(1)
    # A smooth rotating field, with trajectories that leave the frame.
    y, x = np.meshgrid(np.arange(12.0), np.arange(12.0), indexing="ij")
    velocity = np.stack([(x - 5.5) * 0.15, -(y - 5.5) * 0.15], axis=-1)[None]
    velocity = (velocity + rng.normal(0, 0.05, velocity.shape)).astype(np.float32)
    got = [_numpy(d) for d in semi_lagrangian_displacements(velocity, 5)]
    for k, (a, b) in enumerate(zip(got, _trajectories_reference(velocity, 5), strict=True)):
        np.testing.assert_allclose(a, b, atol=1e-4, err_msg=f"lead time {k + 1}")


@pytest.mark.parametrize("motion", [(0.0, 1.0), (-0.8, 0.0), (0.6, -0.6)])
def test_lucas_kanade_recovers_the_motion_of_a_smooth_field(motion):
    rows, cols = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")

    def field(t):
        r, c = rows - 16 - motion[0] * t, cols - 16 - motion[1] * t
        return np.exp(-(r**2 + c**2) / 60.0) + 0.5 * np.exp(-((r - 5) ** 2 + (c + 6) ** 2) / 30.0)

    frames = np.stack([field(t) for t in range(3)])[None, ..., None].astype(np.float32)
    # Backward displacement: minus the motion, where the field has texture.
    exact = _numpy(lucas_kanade(frames, ridge=0.001))[0, 12:20, 12:20].mean(axis=(0, 1))
    np.testing.assert_allclose(exact, -np.array(motion), atol=0.1)
    # The default ridge shrinks the estimate (chosen on radar: less overshoot at long leads).
    shrunk = _numpy(lucas_kanade(frames))[0, 12:20, 12:20].mean(axis=(0, 1))
    along = -float(np.dot(shrunk, motion) / np.dot(motion, motion))
    assert 0.6 < along < 1.0
    still = _numpy(lucas_kanade(np.repeat(frames[:, :1], 3, axis=1)))
    np.testing.assert_allclose(still, 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="3 frames for 2 pairs"):
        lucas_kanade(frames[:, :2])
    with pytest.raises(ValueError, match="divisible by downsample=2"):
        lucas_kanade(frames[:, :, :31])


@pytest.mark.parametrize("motion", [(0.0, 2.5), (-2.0, 1.5)])
def test_iterative_lucas_kanade_refines_a_fast_motion(motion):
    """One linearised solve misses a motion of a few pixels per step by several percent;
    warping the earlier frames along it and solving again recovers the rest."""
    rows, cols = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")

    def field(t):
        r, c = rows - 16 - motion[0] * t, cols - 16 - motion[1] * t
        return np.exp(-(r**2 + c**2) / 60.0) + 0.5 * np.exp(-((r - 5) ** 2 + (c + 6) ** 2) / 30.0)

    frames = np.stack([field(t) for t in range(3)])[None, ..., None].astype(np.float32)
    errors = []
    for iterations in (1, 2):
        flow = _numpy(lucas_kanade(frames, ridge=0.001, iterations=iterations))
        errors.append(np.abs(flow[0, 12:20, 12:20].mean(axis=(0, 1)) + np.array(motion)).max())
    assert errors[1] < 0.05 < errors[0], errors
    with pytest.raises(ValueError, match="iterations"):
        lucas_kanade(frames, iterations=0)


def test_coarse_to_fine_lucas_kanade_resolves_cells_the_coarse_grid_blurs():
    """Two small cells 8 px apart moving in opposite directions: the 2x2 grid's window mixes
    them (each gets about half its speed); refining at full resolution separates them."""
    rows, cols = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")

    def field(t):
        a = np.exp(-((rows - 12) ** 2 + (cols - 10 - t) ** 2) / 6.0)
        return a + np.exp(-((rows - 20) ** 2 + (cols - 22 + t) ** 2) / 6.0)

    frames = np.stack([field(t) for t in range(3)])[None, ..., None].astype(np.float32)
    truth = np.array([[0.0, -1.0], [0.0, 1.0]])  # backward displacement of each cell

    def cells(flow):
        flow = _numpy(flow)[0]
        return np.stack([flow[11:14, 10:13].mean((0, 1)), flow[19:22, 21:24].mean((0, 1))])

    coarse = np.abs(cells(lucas_kanade(frames)) - truth).max()
    fine = np.abs(cells(lucas_kanade(frames, downsample=(2, 1))) - truth).max()
    assert fine < 0.1 < 0.3 < coarse, (fine, coarse)
    # Golden values (kerastp 2026-12-07, TensorFlow 2.21): the 2x2 grid's field is what every
    # model saved before `prior_downsample` existed computes; it must not drift.
    pixels = ([12, 20, 16, 4], [11, 22, 16, 28])
    golden = {
        2: [[0.06377, -0.48609], [-0.04581, 0.6033], [1e-05, -0.00956], [0.0, -2e-05]],
        (2, 1): [[-0.00221, -0.90162], [0.01695, 1.01085], [0.00075, -0.0114], [-0.00029] * 2],
    }
    for downsample, values in golden.items():
        got = _numpy(lucas_kanade(frames, downsample=downsample))[0][pixels]
        np.testing.assert_allclose(got, values, atol=2e-5, err_msg=str(downsample))
    # A one-grid sequence is the int.
    np.testing.assert_array_equal(
        _numpy(lucas_kanade(frames, downsample=(2,))), _numpy(lucas_kanade(frames))
    )
    np.testing.assert_array_equal(
        _numpy(lucas_kanade(frames, downsample=[np.int64(2)])), _numpy(lucas_kanade(frames))
    )
    for bad, match in (
        ((1, 2), r"coarse to fine .*got downsample=\(1, 2\)"),
        ((2, 2), "coarse to fine"),
        ((), "positive int"),
        ((2, 0), "positive int"),
        ("2", "positive int"),
        ((2, True), "positive int"),
        (True, "positive int"),
        ((3, 1), r"divisible by downsample=3 \(every block size of downsample=\(3, 1\)\)"),
    ):
        with pytest.raises(ValueError, match=match):
            lucas_kanade(frames, downsample=bad)


def test_the_motion_prior_of_a_model_follows_its_grids():
    past = np.random.default_rng(4).random((2, 4, 16, 16, 1)).astype(np.float32)
    model = _tiny(prior_downsample=(2, 1))
    flow = lucas_kanade(past, downsample=(2, 1))
    expected = [_numpy(warp(past[:, -1], d)) for d in semi_lagrangian_displacements(flow, 5)]
    np.testing.assert_allclose(
        _numpy(model(past, training=False)), np.stack(expected, axis=1), atol=1e-5
    )
    config = model.get_config()
    assert config["prior_downsample"] == [2, 1]
    reloaded = MotionCast.from_config(json.loads(json.dumps(config)))
    assert reloaded.prior_downsample == (2, 1) and reloaded.get_config() == config
    assert _tiny().get_config()["prior_downsample"] == 2
    assert _tiny(prior_downsample=np.int64(2)).get_config()["prior_downsample"] == 2
    # Without the prior nothing is solved, so the frame size need not divide the grid.
    assert _tiny(motion_prior="none", prior_downsample=3).prior_downsample == 3
    # Models saved before the setting existed have no key: they keep the 2x2 grid.
    del config["prior_downsample"]
    assert MotionCast.from_config(config).prior_downsample == 2
    with pytest.raises(ValueError, match=r"`prior_downsample` must list .*=\(1, 2\)"):
        _tiny(prior_downsample=(1, 2))
    with pytest.raises(ValueError, match="divisible by prior_downsample=3"):
        _tiny(prior_downsample=3)


def test_the_motion_prior_of_a_model_follows_its_iterations():
    past = np.random.default_rng(3).random((2, 4, 16, 16, 1)).astype(np.float32)
    model = _tiny(prior_iterations=2)
    flow = lucas_kanade(past, iterations=2)
    expected = [_numpy(warp(past[:, -1], d)) for d in semi_lagrangian_displacements(flow, 5)]
    np.testing.assert_allclose(
        _numpy(model(past, training=False)), np.stack(expected, axis=1), atol=1e-5
    )
    assert MotionCast.from_config(model.get_config()).prior_iterations == 2
    # Models saved before the setting existed have no key: they keep the single solve.
    config = model.get_config()
    del config["prior_iterations"]
    assert MotionCast.from_config(config).prior_iterations == 1
    with pytest.raises(ValueError, match="prior_iterations"):
        _tiny(prior_iterations=0)


def _tiny(**overrides):
    config = {
        "input_frames": 4,
        "output_frames": 5,
        "height": 16,
        "width": 16,
        "channels": 1,
        "hidden_dim": 8,
        "motion_blocks": 1,
        "residual_blocks": 1,
        **overrides,
    }
    return MotionCast(**config)


def test_a_new_model_forecasts_lucas_kanade_extrapolation_or_persistence():
    """Zero-initialised correction and residual: training starts from the motion prior's
    extrapolation of the last frame (without a prior: persistence)."""
    past = np.random.default_rng(2).random((2, 4, 16, 16, 1)).astype(np.float32)
    forecast = _numpy(_tiny(motion_prior="none")(past, training=False))
    np.testing.assert_allclose(forecast, np.repeat(past[:, -1:], 5, axis=1), atol=1e-6)
    flow = lucas_kanade(past)
    expected = [_numpy(warp(past[:, -1], d)) for d in semi_lagrangian_displacements(flow, 5)]
    forecast = _numpy(_tiny()(past, training=False))
    np.testing.assert_allclose(forecast, np.stack(expected, axis=1), atol=1e-5)
    with pytest.raises(ValueError, match="motion_prior"):
        _tiny(motion_prior="farneback")


def _with_velocity(model, rows, cols):
    """Sets the motion head to a uniform backward displacement per step (its bias)."""
    kernel, _ = model.motion_head.get_weights()
    model.motion_head.set_weights([np.zeros_like(kernel), np.array([rows, cols], np.float32)])
    return model


def test_uniform_motion_moves_the_last_frame_one_step_per_lead_time():
    model = _with_velocity(_tiny(motion_prior="none"), 0.0, -1.0)  # one pixel right per step
    past = np.zeros((1, 4, 16, 16, 1), np.float32)
    past[0, -1, 5:9, 2:5] = 1.0
    forecast = _numpy(model(past, training=False))
    for k in range(5):
        expected = np.zeros((16, 16), np.float32)
        expected[5:9, 3 + k : 6 + k] = 1.0
        np.testing.assert_allclose(forecast[0, k, ..., 0], expected, atol=1e-5)


def test_weights_do_not_depend_on_the_horizon():
    short = _with_velocity(_tiny(), 0.5, 0.25)
    long = _tiny(output_frames=11)
    long.set_weights(short.get_weights())
    assert long.frames_per_step == 11
    past = np.random.default_rng(3).random((2, 4, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(
        _numpy(long(past, training=False))[:, :5], _numpy(short(past, training=False)), atol=1e-5
    )


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="patch_size=4"):
        _tiny(height=18)
    with pytest.raises(ValueError, match="hidden_dim"):
        _tiny(hidden_dim=0)


def test_learns_the_motion_of_a_translating_blob():
    """A few dozen steps on blobs drifting one pixel per frame: it beats persistence."""
    rng = np.random.default_rng(4)
    y, x = np.meshgrid(np.arange(16.0), np.arange(16.0), indexing="ij")

    def clips(count):
        frames = np.zeros((count, 9, 16, 16, 1), np.float32)
        for i in range(count):
            cy, cx = rng.uniform(4, 8), rng.uniform(2, 5)
            for t in range(9):
                frames[i, t, ..., 0] = np.exp(-((y - cy) ** 2 + (x - cx - t) ** 2) / 4.0)
        return frames[:, :4], frames[:, 4:]

    keras.utils.set_random_seed(0)
    model = _tiny()
    model.compile(learning_rate=1e-2)
    past, future = clips(64)
    model.fit(past, future, batch_size=16, epochs=10, verbose=0)
    test_past, test_future = clips(16)
    forecast = model.predict(test_past, verbose=0)
    persistence = np.repeat(test_past[:, -1:], 5, axis=1)
    mse = float(np.mean((forecast - test_future) ** 2))
    baseline = float(np.mean((persistence - test_future) ** 2))
    assert mse < 0.5 * baseline, (mse, baseline)
    # It learned that content moves right: the backward displacement points left.
    _, velocity = model.motion(keras.ops.convert_to_tensor(test_past), training=False)
    assert float(np.mean(_numpy(velocity)[..., 1])) < -0.3


@pytest.mark.parametrize(
    "prior", [{"prior_iterations": 1}, {"prior_iterations": 2}, {"prior_downsample": [2, 1]}]
)
def test_tflite_has_builtin_ops_and_equal_outputs(tmp_path, prior):
    model = _with_velocity(_tiny(**prior), 0.4, -0.7)
    sidecar = export.export_tflite(model, tmp_path / "m.tflite", preset="motioncast_tiny")
    lite = LiteForecaster(tmp_path / "m.tflite", num_threads=1)
    assert not [op for op in lite.ops if op.startswith("Flex") or op == "WHILE"]
    assert "GATHER" in lite.ops and sidecar["parity"]["passed"]
    past = np.random.default_rng(5).random((3, 4, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(
        lite.predict(past), _numpy(model(past, training=False)), atol=export.TOLERANCES["tflite"]
    )


def test_presets_are_registered_with_their_data():
    assert registry.get_preset("motioncast_tiny")["tiny"]
    radar = registry.get_preset("motioncast_radar")
    assert radar["data"] == "radar"
    assert (radar["config"]["input_frames"], radar["config"]["output_frames"]) == (6, 12)


@pytest.mark.slow
def test_int8_runs_with_the_solve_and_the_sample_positions_in_float(tmp_path):
    """Fully integer, LiteRT refuses the Lucas-Kanade DIV; MotionCast's defaults keep it, the
    advection's pixel indices and the GELU -> BatchNorm pairs in float, and the model runs
    (with the refinement's warps inside the solve, as `motioncast_radar` has them)."""
    model = registry.build_model("motioncast_tiny", prior_iterations=2)
    rng = np.random.default_rng(0)
    calibration = rng.random((4, *model.input_signature_shape[1:]), dtype=np.float32)
    sidecar = export.export_tflite(model, tmp_path / "q.tflite", quantize="int8",
                                   representative_data=calibration)  # fmt: skip
    assert sidecar["float_layers"] == ["motion_prior", "advection"]
    assert sidecar["parity"]["passed"]
    interpreter = LiteForecaster(tmp_path / "q.tflite").interpreter
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    outputs = {op["op_name"]: {dtypes[int(t)] for t in op["outputs"]}
               for op in interpreter._get_ops_details()}  # fmt: skip
    assert outputs["DIV"] == {np.float32} and outputs["FLOOR"] == {np.float32}
    assert np.int8 in outputs["CONV_2D"]
