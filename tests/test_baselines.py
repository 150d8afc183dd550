"""ConvLSTM, PredRNN, SimVP and TAU: OpenSTL fidelity, scheduled sampling, the DDR loss."""

import json

import keras
import numpy as np
import pytest

from kerastp import registry
from kerastp.losses import MSEWithDifferentialDivergence, differential_divergence
from kerastp.models.recurrent import scheduled_sampling_eta
from kerastp.models.simvp import drop_path_rates

# OpenSTL's PyTorch modules in these configurations, counted with fvcore (issue 4).
OPENSTL = {
    "convlstm_mmnist": (15.08e6, 56.79e9),
    "predrnn_mmnist": (23.84e6, 115.95e9),
    "simvp_mmnist": (46.77e6, 16.53e9),
    "tau_mmnist": (44.66e6, 15.95e9),
}


def test_stored_counts_cover_every_preset_and_config():
    """kerastp/preset_counts.json holds every preset, counted with its current config (CI's
    slow step rebuilds the paper-size ones and recounts)."""
    stored = registry.stored_counts()
    assert sorted(stored) == sorted(registry.PRESETS)
    for name, counts in stored.items():
        config = json.loads(json.dumps(registry.get_preset(name)["config"]))
        assert counts["config"] == config, f"{name}: recount with `pytest -m slow -k counts`"
        assert 0 < counts["params"] <= counts["total_params"]
        assert 0 < counts["fvcore_macs"] and 0 < counts["macs"]


@pytest.mark.parametrize("preset", registry.list_presets(tiny=True))
def test_stored_counts_of_tiny_presets_equal_a_recount(preset):
    stored = registry.preset_summary(preset)
    assert registry.preset_summary(preset, recount=True) == stored


@pytest.mark.parametrize("preset", sorted(OPENSTL))
def test_parameters_and_flops_match_openstl(preset, paper_counts):
    summary = paper_counts[preset]
    paper = registry.get_preset(preset)["paper"]
    # ConvLSTM: OpenSTL's count includes two convolutions per cell its forward never calls.
    params = summary["params"] + paper.get("openstl_unused_params", 0)
    assert params == pytest.approx(paper["params"], rel=0.02)
    assert params == pytest.approx(OPENSTL[preset][0], rel=0.001)
    # ConvLSTM and PredRNN: OpenSTL also convolves the zero state at the first step.
    flops = summary["fvcore_macs"] + paper.get("openstl_zero_state_macs", 0)
    zero_state = registry.preset_summary(preset)["paper_zero_state_macs"]
    assert zero_state == paper.get("openstl_zero_state_macs", 0)
    assert flops == pytest.approx(paper["flops"], rel=0.05)
    assert flops == pytest.approx(OPENSTL[preset][1], rel=0.005)


def test_exact_recurrent_counts(paper_counts):
    # 4 x 128 hidden, filter 5, 16 patch channels: the arithmetic behind OpenSTL's figures.
    conv_lstm = paper_counts["convlstm_mmnist"]
    unused = registry.get_preset("convlstm_mmnist")["paper"]["openstl_unused_params"]
    used = (16 + 128) * 512 * 25 + 3 * (128 + 128) * 512 * 25 + 128 * 16
    assert conv_lstm["params"] == used == 11_675_648
    assert conv_lstm["params"] + unused == 15_083_520
    # 19 steps (10 + 10 - 1) of every convolution at 16 x 16, but the first step has no
    # recurrent convolutions (its state is zero).
    recurrent = 4 * 128 * 512 * 25
    assert conv_lstm["macs"] == 19 * 256 * (used - 128 * 16) + 19 * 256 * 128 * 16 - 256 * recurrent
    assert 256 * recurrent == registry.get_preset("convlstm_mmnist")["paper"][
        "openstl_zero_state_macs"
    ]


def test_openstl_scheduled_sampling_schedule():
    start, rate, stop = 1.0, 0.15, 5
    eta, expected = start, []
    for itr in range(9):  # OpenSTL's `schedule_sampling`, one call per update
        eta = eta - rate if itr < stop else 0.0
        expected.append(min(max(eta, 0.0), 1.0))
    got = [float(scheduled_sampling_eta(itr, start, rate, stop)) for itr in range(9)]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # The MMNIST setting: 1 -> 0 linearly over 50,000 updates.
    assert float(scheduled_sampling_eta(0, 1.0, 2e-5, 50000)) == pytest.approx(1 - 2e-5)
    assert float(scheduled_sampling_eta(24999, 1.0, 2e-5, 50000)) == pytest.approx(0.5)
    assert float(scheduled_sampling_eta(50000, 1.0, 2e-5, 50000)) == 0.0


def _recurrent(preset, **overrides):
    model = registry.build_model(preset, **overrides)
    model.compile(optimizer=keras.optimizers.SGD(0.0), metrics=[])
    return model


def _one_step_loss(model, past, future):
    history = model.fit(past, future, batch_size=len(past), epochs=1, verbose=0)
    return history.history["loss"][0]


def _frames(shape, seed):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("preset", ["convlstm_tiny", "predrnn_tiny"])
def test_scheduled_sampling_feeds_truth_in_train_step_only(preset):
    # Test size (4 input frames of 16 x 16): the schedule does not depend on the frame size.
    t_in, t_out, size = 4, 3, {"height": 16, "width": 16}
    kwargs = {
        "input_frames": t_in,
        "output_frames": t_out,
        "supervise_inputs": False,
        "sampling_changing_rate": 0.0,
        **size,
    }
    teacher = _recurrent(preset, sampling_start_value=1.0, **kwargs)
    free = _recurrent(preset, sampling_start_value=0.0, **kwargs)
    free.set_weights(teacher.get_weights())
    past = _frames((2, t_in, 16, 16, 1), 0)
    future = _frames((2, t_out, 16, 16, 1), 1)

    # eta = 1: every decoder input is the true frame, so output k is the one-step forecast
    # after reading past + future[:k] (computed here by a longer-input model).
    forced = []
    for k in range(t_out):
        reader = registry.build_model(preset, input_frames=t_in + k, output_frames=1, **size)
        reader.set_weights(teacher.get_weights())
        window = np.concatenate([past, future[:, :k]], axis=1)
        forced.append(keras.ops.convert_to_numpy(reader(window))[:, 0])
    forced = np.stack(forced, axis=1)
    free_running = teacher.predict(past, verbose=0)
    assert not np.allclose(forced, free_running, atol=1e-4)

    assert _one_step_loss(teacher, past, future) == pytest.approx(
        np.mean((forced - future) ** 2), rel=1e-4
    )
    # eta = 0 (and inference at any eta): predictions are fed back.
    assert _one_step_loss(free, past, future) == pytest.approx(
        np.mean((free_running - future) ** 2), rel=1e-4
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(teacher(past, training=True)), free_running, atol=1e-5
    )


def test_sampling_mask_is_drawn_per_sequence_and_step_at_rate_eta():
    model = registry.build_model("convlstm_tiny", output_frames=5)
    future = _frames((512, 5, 64, 64, 1), 2)
    # The tiny preset's schedule: 1 -> 0 over its first 2,500 updates.
    patches, mask = model.teacher_inputs(future, iterations=1249)  # eta = 0.5
    mask = keras.ops.convert_to_numpy(mask)
    assert mask.shape == (512, 4)
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert mask.mean() == pytest.approx(0.5, abs=0.05)
    assert patches.shape == (512, 4, 16, 16, 16)
    assert model.teacher_inputs(future, iterations=2500)[1].numpy().sum() == 0
    mmnist = registry.get_preset("convlstm_mmnist")["config"]
    assert (mmnist["sampling_changing_rate"], mmnist["sampling_stop_iter"]) == (2e-5, 50000)
    off = registry.build_model("convlstm_tiny", output_frames=5, scheduled_sampling=False)
    assert off.teacher_inputs(future, iterations=0) is None
    with pytest.raises(ValueError, match="targets `future` of shape"):
        model.teacher_inputs(future[:, :3], iterations=0)


def test_input_frames_are_supervised_during_training_only():
    model = registry.build_model("convlstm_tiny", input_frames=4, output_frames=2)
    past = _frames((2, 4, 64, 64, 1), 3)
    model(past, training=False)
    assert not model.losses
    model(past, training=True)
    (added,) = model.losses
    one_step = []
    for j in range(1, 4):
        reader = registry.build_model("convlstm_tiny", input_frames=j, output_frames=1)
        reader.set_weights(model.get_weights())
        one_step.append(keras.ops.convert_to_numpy(reader(past[:, :j]))[:, 0])
    expected = (3 / 2) * np.mean((np.stack(one_step, axis=1) - past[:, 1:]) ** 2)
    assert float(added) == pytest.approx(expected, rel=1e-4)


def test_patch_folding_matches_openstl_reshape_patch():
    model = registry.build_model("convlstm_tiny")
    frames = _frames((2, 3, 64, 64, 1), 4)
    p = 4
    # OpenSTL's reshape_patch: (B, T, H/p, p, W/p, p, C) -> (B, T, H/p, W/p, p*p*C).
    expected = frames.reshape(2, 3, 16, p, 16, p, 1).transpose(0, 1, 2, 4, 3, 5, 6)
    expected = expected.reshape(2, 3, 16, 16, p * p)
    patches = keras.ops.convert_to_numpy(model.patchify(frames))
    np.testing.assert_array_equal(patches, expected)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.unpatchify(patches)), frames)


def _ddr_reference(pred, true, tau=0.1, eps=1e-12):
    """OpenSTL's `diff_div_reg`, transcribed to NumPy."""
    b, t = pred.shape[:2]
    if t <= 2:
        return 0.0
    gp = (pred[:, 1:] - pred[:, :-1]).reshape(b, t - 1, -1) / tau
    gb = (true[:, 1:] - true[:, :-1]).reshape(b, t - 1, -1) / tau
    p = np.exp(gp - gp.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    q = np.exp(gb - gb.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    return float(np.mean(p * np.log(p / (q + eps) + eps)))


def test_differential_divergence_matches_openstl():
    true = _frames((3, 5, 8, 8, 2), 5)
    pred = _frames((3, 5, 8, 8, 2), 6)
    got = keras.ops.convert_to_numpy(differential_divergence(true, pred))
    assert got.shape == (3,)
    assert float(got.mean()) == pytest.approx(_ddr_reference(pred, true), rel=1e-4)
    assert float(np.mean(keras.ops.convert_to_numpy(differential_divergence(true, true)))) == (
        pytest.approx(0.0, abs=1e-6)
    )
    short = keras.ops.convert_to_numpy(differential_divergence(true[:, :2], pred[:, :2]))
    np.testing.assert_array_equal(short, 0.0)


def test_tau_trains_on_mse_plus_weighted_divergence():
    model = registry.build_model("tau_tiny")
    model.compile()
    assert isinstance(model.loss, MSEWithDifferentialDivergence)
    assert model.loss.weight == 0.1
    true = _frames((2, 10, 64, 64, 1), 7)
    pred = _frames((2, 10, 64, 64, 1), 8)
    loss = float(model.compute_loss(y=true, y_pred=pred))
    expected = np.mean((pred - true) ** 2) + 0.1 * _ddr_reference(pred, true)
    assert loss == pytest.approx(expected, rel=1e-4)
    assert loss > np.mean((pred - true) ** 2) * (1 + 1e-4)
    # The weight is a constructor argument and survives a config round trip.
    other = registry.build_model("tau_tiny", divergence_weight=0.5)
    clone = type(other).from_config(other.get_config())
    clone.compile()
    assert clone.loss.weight == 0.5
    simvp = registry.build_model("simvp_tiny")
    simvp.compile()
    assert isinstance(simvp.loss, keras.losses.MeanSquaredError)


def test_drop_path_rule_is_openstls():
    np.testing.assert_allclose(drop_path_rates(8, 0.0), np.linspace(0.01, 0.0, 8))
    # The rates follow N_T (8 for simvp_mmnist); narrow channels spare building 47M weights.
    model = registry.build_model("simvp_mmnist", hid_s=8, hid_t=16, height=16, width=16)
    assert [block.drop_path for block in model.translator] == pytest.approx(
        list(np.linspace(0.01, 0.0, 8))
    )
    assert [type(b).__name__ for b in registry.build_model("tau_tiny").translator] == [
        "TAUBlock",
        "TAUBlock",
    ]


@pytest.mark.parametrize(
    "preset, overrides, message",
    [
        ("predrnn_tiny", {"num_hidden": [16, 8]}, "one value repeated"),
        ("convlstm_tiny", {"num_hidden": []}, "non-empty list"),
        ("convlstm_tiny", {"filter_size": 4}, "filter_size"),
        ("convlstm_tiny", {"patch_size": 3}, "divisible by patch_size=3"),
        ("convlstm_tiny", {"sampling_start_value": 1.5}, "sampling_start_value"),
        ("convlstm_tiny", {"sampling_stop_iter": -1}, "sampling_stop_iter"),
        ("simvp_tiny", {"model_type": "vit"}, "model_type"),
        ("simvp_tiny", {"num_temporal": 1}, "num_temporal"),
        ("simvp_tiny", {"hid_s": 15}, "hid_s"),
        ("tau_tiny", {"model_type": "gsta"}, "model_type"),
        ("tau_tiny", {"divergence_weight": -1.0}, "divergence_weight"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(preset, overrides, message):
    with pytest.raises(ValueError, match=message):
        registry.build_model(preset, **overrides)


def test_mac_count_includes_frames_folded_into_the_batch_axis():
    from kerastp.flops import count_macs

    model = registry.build_model("simvp_tiny")
    rows = {row.path: row for row in count_macs(model).layers}
    # The encoder runs once on B*T = 10 frames of 64 x 64: 3x3 conv, 1 -> 16 channels.
    assert rows["encoder_0/conv"].macs == 10 * 64 * 64 * 9 * 1 * 16
    # fvcore counts GroupNorm (5 operations per element) and SimVP's depth-wise convs.
    assert rows["encoder_0/norm"].fvcore_macs == 5 * 10 * 64 * 64 * 16
    assert rows["translator_0/lka_local"].fvcore_macs == rows["translator_0/lka_local"].macs > 0


def test_tau_attention_keeps_pytorch_default_init():
    from kerastp.layers.tau_block import TAUBlock

    block = TAUBlock(dim=64, kernel_size=21)
    block.build((None, 8, 8, 64))
    # PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = k*k for a depth-wise conv (not C*k*k).
    for layer, k in ((block.lka_local, 5), (block.lka_far, 7)):
        kernel = np.asarray(layer.kernel)
        assert np.abs(kernel).max() <= 1 / k
        assert np.abs(kernel).max() > 0.8 / k
    kernel = np.asarray(block.lka_gate.kernel)  # 1x1, fan_in = dim
    assert 0.8 / 8 < np.abs(kernel).max() <= 1 / 8


@pytest.mark.parametrize(("preset", "convs_per_step"), [("convlstm_tiny", 4), ("predrnn_tiny", 10)])
def test_recurrent_tflite_delegates_everything_but_the_final_stack(
    preset, convs_per_step, tmp_path
):
    """The exported recurrence has no zero-state convolutions and nothing XNNPACK leaves to
    LiteRT's kernels but the final stack of the forecast frames."""
    from collections import Counter

    from kerastp import export
    from kerastp.lite import LiteForecaster, delegation

    model = registry.build_model(preset, input_frames=4, output_frames=3)
    sidecar = export.export_tflite(model, tmp_path / "model.tflite")
    assert sidecar["parity"]["passed"], sidecar["parity"]
    lite = LiteForecaster(tmp_path / "model.tflite")
    lite.predict(export.probe_batch(model, batch_size=1))  # XNNPACK applies on allocation
    placed = delegation(lite.interpreter)
    assert placed["fallback_ops"] == {"PACK": 1}, placed
    assert placed["partitions"] == 2, placed
    details = lite.interpreter._get_ops_details()
    convs = Counter(d["op_name"] for d in details)["CONV_2D"]
    # 6 steps (4 + 3 - 1) of 2 layers; the first step has no recurrent convolutions (1 per
    # ConvLSTM layer, conv_h; PredRNN: conv_h in both layers and the bottom layer's conv_m);
    # one read-out per forecast frame.
    skipped = 2 if preset == "convlstm_tiny" else 3
    assert convs == 6 * convs_per_step - skipped + 3
