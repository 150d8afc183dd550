"""The benchmark suite (benchmarks/run.py and its parts): helpers, budgets and a smoke run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kerastp import registry

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _common  # noqa: E402


def test_frame_overrides_fit_ustep_segments_to_the_input():
    assert registry.frame_overrides("ustep_tiny", 6, 12) == {
        "input_frames": 6,
        "output_frames": 12,
        "macro_frames": 3,
    }
    # dt 2 divides 4; DT 5 does not: the largest divisor of 4 not above 5 is 4.
    assert registry.frame_overrides("ustep_tiny", 4, 4)["macro_frames"] == 4
    assert "micro_frames" not in registry.frame_overrides("ustep_tiny", 4, 4)
    assert registry.frame_overrides("stlight_tiny", 6, 12) == {
        "input_frames": 6,
        "output_frames": 12,
    }
    model = registry.build_model("ustep_tiny", **registry.frame_overrides("ustep_tiny", 6, 12))
    assert (model.input_frames, model.output_frames) == (6, 12)


def test_budget_overrides_rescale_scheduled_sampling_only_for_recurrent_presets():
    assert _common.budget_overrides("predrnn_tiny", 600) == {
        "sampling_stop_iter": 240,
        "sampling_changing_rate": pytest.approx(1 / 240),
    }
    assert _common.budget_overrides("convlstm_mmnist", 1)["sampling_stop_iter"] == 1
    assert _common.budget_overrides("stlight_tiny", 600) == {}
    assert _common.budget_overrides("tau_tiny", 600) == {}


def test_preset_selections():
    assert _common.presets_for("tiny") == registry.list_presets(tiny=True)
    assert _common.presets_for("all") == registry.list_presets()
    paper = _common.presets_for("paper")
    assert len(paper) == len(registry.MODELS)
    assert all(not registry.get_preset(p).get("tiny", False) for p in paper)
    assert "stlight_extra_small" in paper and "predrnn_mmnist" in paper
    assert _common.presets_for(["simvp_tiny"]) == ["simvp_tiny"]
    assert _common.presets_for(["tiny"]) == registry.list_presets(tiny=True)
    with pytest.raises(ValueError, match="stlight_huge"):
        _common.presets_for(["stlight_tiny", "stlight_huge"])
    with pytest.raises(ValueError, match="preset selection"):
        _common.presets_for("everything")


@pytest.mark.parametrize("budget", sorted(_common.BUDGETS))
def test_every_budget_builds_command_lines_the_parts_accept(budget, tmp_path):
    import run

    commands = run.commands(budget, tmp_path)
    assert list(commands) == list(run.PARTS)
    for part, argv in commands.items():
        assert argv[0] == f"{part}.py"
        args = __import__(part).build_parser().parse_args(argv[1:])
        assert args.out_dir == str(tmp_path)
    quality = __import__("quality").build_parser().parse_args(commands["quality"][1:])
    assert quality.steps == _common.BUDGETS[budget]["quality_steps"]


def test_pysteps_db_transform_round_trip():
    import nowcasting

    rate = np.array([0.0, 0.05, 0.1, 1.0, 12.5, 100.0])
    db = nowcasting._db(rate)
    assert db[0] == db[1] == nowcasting.DB_ZERO
    np.testing.assert_allclose(db[2:], 10 * np.log10(rate[2:]))
    back = nowcasting._from_db(db)
    np.testing.assert_allclose(back, [0.0, 0.0, 0.1, 1.0, 12.5, 100.0], rtol=1e-12)


def test_nowcasting_score_clips_forecasts_to_the_data_range():
    import nowcasting

    future = np.full((1, 12, 8, 8, 1), 0.2, dtype=np.float32)
    exploded = np.full_like(future, 7.0)  # far above model scale 1 (= 100 mm/h)
    at_top = np.ones_like(future)
    assert nowcasting.score(future, exploded)["mse_mm_h"] == pytest.approx(
        nowcasting.score(future, at_top)["mse_mm_h"]
    )
    perfect = nowcasting.score(future, future)
    assert perfect["mse_mm_h"] == 0 and perfect["csi"]["1.0"] == 1.0
    assert len(perfect["mse_mm_h_per_lead_time"]) == 12


@pytest.mark.slow  # pysteps and four priors on 32 windows
def test_the_prior_check_never_touches_the_validation_events(tmp_path, radar_dir):
    """`--prior-check`: how MotionCast's radar prior was chosen, on the training events only,
    one row per prior setting compared, the preset's marked."""
    import nowcasting

    from kerastp.data import radar

    prior = nowcasting.main(["--prior-check", "--out-dir", str(tmp_path)])
    assert set(prior["events"]).isdisjoint(radar.VALIDATION_EVENTS)
    names = [r["name"] for r in prior["results"]]
    config = registry.get_preset("motioncast_radar")["config"]
    chosen = {k: config[k] for k in ("prior_downsample", "prior_iterations")}
    assert chosen in nowcasting.PRIOR_VARIANTS
    assert [n for n in names if "the preset's" in n] == [
        nowcasting.prior_name(chosen) + ", the preset's"
    ]
    assert len([n for n in names if n.startswith("kerastp")]) == len(nowcasting.PRIOR_VARIANTS)
    forecasts = [r["mse_mm_h"] for r in prior["results"] if r["name"].startswith("kerastp")]
    assert len(set(forecasts)) == len(forecasts)  # every setting changes the forecast


@pytest.mark.slow  # one short training on the inner split
def test_the_schedule_check_trains_and_scores_on_training_events_only(
    tmp_path, radar_dir, monkeypatch
):
    """`--schedule-check`: how the shipped radar model's fine-tuning was chosen. The inner
    split trains on some training events and scores on the others; the validation events
    play no part (here with one short schedule instead of the recorded list)."""
    import nowcasting

    from kerastp.data import radar

    monkeypatch.setattr(nowcasting, "SCHEDULE_VARIANTS", (("auto", 6, 3e-4),))
    result = nowcasting.main(["--schedule-check", "--out-dir", str(tmp_path)])
    held_out, trained = set(result["held_out_events"]), set(result["train_events"])
    assert held_out == set(nowcasting.INNER_HELD_OUT) and not held_out & trained
    assert (held_out | trained) == set(nowcasting.TRAIN_EVENTS)
    assert not (held_out | trained) & set(radar.VALIDATION_EVENTS)
    prior, tuned = result["results"]
    assert tuned["name"] == f"auto, {tuned['steps']} steps, peak 0.0003" and tuned["steps"] > 0
    assert prior["mse_mm_h"] != tuned["mse_mm_h"]  # the training changed the forecast
    table = (tmp_path / "nowcasting_schedule.md").read_text()
    assert "| auto, " in table and "play no part" in table


@pytest.mark.slow
def test_benchmark_suite_smoke(tmp_path):
    """`benchmarks/run.py --budget smoke` runs every part and writes every table and plot."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--budget", "smoke", "--out-dir",
         str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tiny = registry.list_presets(tiny=True)

    fidelity = json.loads((tmp_path / "fidelity.json").read_text())
    assert [r["preset"] for r in fidelity["results"]] == tiny
    assert all(r["params"] > 0 and r["fvcore_macs"] > 0 for r in fidelity["results"])
    assert fidelity["machine"]["cores"] >= 1

    throughput = json.loads((tmp_path / "throughput.json").read_text())
    rows = throughput["results"]
    assert {(r["preset"], r["mode"]) for r in rows} == {
        (p, m) for p in ("stlight_tiny", "convlstm_tiny") for m in ("eager", "graph", "xla")
    }
    assert all(r["samples_per_second"] > 0 and r["loss_finite"] for r in rows), rows

    quality = json.loads((tmp_path / "quality.json").read_text())
    assert [r["preset"] for r in quality["results"]] == tiny
    for row in quality["results"]:
        assert row["steps"] == 3 and row["eval_sequences"] == 16
        assert len(row["mse_per_frame"]) == 10
        assert np.isfinite([row["mse"], row["mae"], row["ssim"], row["psnr"]]).all()

    nowcast = json.loads((tmp_path / "nowcasting.json").read_text())
    names = [r["name"] for r in nowcast["results"]]
    assert names == ["no rain (all zero)", "persistence", "pysteps LK", "pysteps S-PROG",
                     "kerastp Lucas-Kanade (untrained MotionCast)", *tiny]  # fmt: skip
    # Every training window at stride 1 (six events), the protocol's 16 evaluation windows.
    assert nowcast["train_windows"] == 142 and nowcast["eval_windows"] == 16
    assert (nowcast["stride"], nowcast["augment"]) == (1, "dihedral")
    for row in nowcast["results"]:
        assert len(row["mse_mm_h_per_lead_time"]) == len(row["fss_per_lead_time"]) == 12
        assert 0 <= row["csi"]["1.0"] <= 1
    # The baselines do not depend on training: persistence's scores are the radar protocol's.
    zero, persistence = nowcast["results"][:2]
    assert persistence["mse_mm_h_per_lead_time"][0] < persistence["mse_mm_h_per_lead_time"][-1]
    assert zero["csi"]["1.0"] == 0.0 and zero["fss"] == 0.0
    for preset in tiny:
        assert (tmp_path / "models" / f"{preset}.keras").is_file()

    for png in ("quality_mse_per_lead_time", "quality_forecasts", "nowcasting_mse",
                "nowcasting_csi_1mm", "nowcasting_fss", "nowcasting_window"):  # fmt: skip
        assert (tmp_path / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "summary.md").read_text()
    for part in ("fidelity", "throughput", "quality", "nowcasting"):
        assert f"## {part}" in summary


@pytest.mark.slow  # four training processes on JAX: 31 s
def test_pretrain_continues_from_an_earlier_model_and_records_the_chain(tmp_path, shared_mnist):
    """`benchmarks/pretrain.py --init`: the earlier model's weights (at learning rate 0 the
    trainable weights come out unchanged), its SHA-256 and training chain recorded; another
    architecture, or resuming a run under another --init, is refused by name."""
    pytest.importorskip("jax")
    from kerastp.pretrained import sha256
    from kerastp.saving import load_model

    toy = ["--set", "hidden_dim=16", "--set", "depth=2", "--set", "batch_size=2",
           "--set", "steps_per_epoch=2", "--steps", "2", "--test-sequences", "2",
           "--workers", "1", "--mnist", str(shared_mnist)]  # fmt: skip

    def pretrain(out, *extra):
        return subprocess.run(
            [sys.executable, str(BENCHMARKS / "pretrain.py"), "mmnist", "--out", str(out),
             *toy, *extra],
            capture_output=True, text=True, check=False, env={**os.environ,
                                                             "KERAS_BACKEND": "jax"},
        )  # fmt: skip

    first = pretrain(tmp_path / "a")
    assert first.returncode == 0, first.stderr[-2000:]
    init = tmp_path / "a" / "mmnist.keras"
    second = pretrain(tmp_path / "b", "--init", str(init), "--set", "max_learning_rate=0.0")
    assert second.returncode == 0, second.stderr[-2000:]
    record = json.loads((tmp_path / "b" / "recipe.json").read_text())
    assert record["init"]["sha256"] == sha256(init)
    assert record["init"]["steps_before"] == 2
    # The continuation trains on the data epoch after the one its init was trained on.
    assert record["init"]["data_epochs_before"] == 1 and record["first_data_epoch"] == 1
    assert record["init"]["trained"]["record"] == str(tmp_path / "a" / "recipe.json")
    before, after = load_model(init), load_model(tmp_path / "b" / "mmnist.keras")
    for w_before, w_after in zip(before.trainable_weights, after.trainable_weights, strict=True):
        np.testing.assert_array_equal(np.asarray(w_before), np.asarray(w_after))
    # The card of a shipped continuation names the file and the steps behind it.
    import ship_pretrained

    lines = ship_pretrained._continued_from(record["init"])
    assert sha256(init) in lines[0] and "2 steps" in lines[0] and lines[1].endswith(": 2")
    wrong = pretrain(tmp_path / "c", "--init", str(init), "--set", "hidden_dim=32")
    assert wrong.returncode != 0 and "hidden_dim=16 differs" in wrong.stderr
    resumed = pretrain(tmp_path / "b")  # the record holds a plan: a resume, without its init
    assert resumed.returncode != 0 and "same --init" in resumed.stderr
    ragged = pretrain(tmp_path / "d", "--steps", "3")  # not a whole number of epochs
    assert ragged.returncode != 0 and "--steps 3" in ragged.stderr
    assert "multiple of 2" in ragged.stderr and not (tmp_path / "d" / "recipe.json").exists()


@pytest.mark.slow  # two models converted three ways, timed in a subprocess: ~40 s
def test_int8_benchmark_scores_and_times_every_conversion(tmp_path, radar_dir):
    """`benchmarks/int8.py`: each model's fp32 and int8 files, scored on held-out sequences
    (trained models) and timed at every thread count, with the ratio to fp32 of the same run."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "int8.py"), "--models",
         "saved_models/radar/radar.keras:radar", "--speed-presets", "convlstm_tiny",
         "--runs", "4", "--max-seconds", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=BENCHMARKS.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads((tmp_path / "int8.json").read_text())["results"]
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    assert set(by_model) == {"radar [radar]", "convlstm_tiny"}
    for name, model_rows in by_model.items():
        assert [r["conversion"] for r in model_rows][:2] == ["fp32", "int8 (fully integer)"]
        fp32 = model_rows[0]
        for row in model_rows:
            if "error" in row:
                continue
            assert set(row["latency_ms"]) == {"1", "2"} and min(row["latency_ms"].values()) > 0
            assert row["bytes"] > 0
            if row is not fp32:
                assert row["speed_vs_fp32"]["1"] == pytest.approx(
                    row["latency_ms"]["1"] / fp32["latency_ms"]["1"])
            scored = name != "convlstm_tiny"
            assert ("mse_increase" in row) == scored
            if scored:
                assert np.isfinite(row["mse_tflite"]) and row["mse_keras"] > 0
    assert "radar [radar]" in (tmp_path / "int8.md").read_text()
    # The shipped radar model's fully integer file does not run (DIV): a row with its error.
    assert "error" in by_model["radar [radar]"][1]


def test_shipped_card_latencies_come_from_one_interleaved_timing_process():
    """`ship_pretrained._lite_rows` times every shipped file at 1 and 2 threads in one process
    without TensorFlow, and the card's TFLite section says so."""
    import ship_pretrained

    path = BENCHMARKS.parent / "tflite" / "radar" / "radar.tflite"  # shipped, in git
    sidecar = {"parity": {"max_abs_error": 1e-6}}
    rows = ship_pretrained._lite_rows({"tflite": (path, sidecar)})
    row = rows["tflite"]
    assert row["path"] == "tflite/radar/radar.tflite" and row["bytes"] == path.stat().st_size
    assert set(row["latency_ms"]) == {"1", "2"} and min(row["latency_ms"].values()) > 0
    card = {"tflite": rows, "latency_method": "interleaved", "ship_machine": "this machine"}
    section = "\n".join(ship_pretrained.tflite_section(card, ".3f", "on {n}"))
    assert f"| {row['latency_ms']['1']} ms | {row['latency_ms']['2']} ms |" in section
    assert "timed interleaved in one process without TensorFlow" in section
    older = "\n".join(ship_pretrained.tflite_section({**card, "latency_method": None}, ".3f", ""))
    assert "each file timed in turn" in older


def test_pretrain_stream_starts_after_the_chain_and_where_a_backup_stopped(tmp_path):
    """A continuation trains on the data epochs after its chain's; a resumed run restarts the
    stream at the fit epoch Keras' `BackupAndRestore` restores (its training_metadata.json)."""
    import pretrain

    backup = tmp_path / "backup"
    assert pretrain.stream_start(backup, None) == 0
    assert pretrain.stream_start(backup, {"data_epochs_before": 8}) == 8
    backup.mkdir()
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": 3, "batch": -1}))
    assert pretrain.stream_start(backup, {"data_epochs_before": 8}) == 11
    assert pretrain.stream_start(backup, {"data_epochs_before": None}) == 3


def test_card_names_the_training_hardware_of_every_backend():
    """The card's hardware words for a JAX GPU record, a TensorFlow CPU record and an older
    record that named no device (CPU): device, cores and versions, never "None"."""
    import ship_pretrained

    gpu = {"backend": "jax", "device": "NVIDIA H200", "jax": "0.11.2", "keras": "3.15.1"}
    words = ship_pretrained.hardware_words(gpu)
    assert words == "NVIDIA H200 (jax backend, JAX 0.11.2, Keras 3.15.1)"
    cpu = {"backend": "tensorflow", "device": "CPU", "cpu": "AMD EPYC 7B13", "cpu_count": 2,
           "tensorflow": "2.21.0", "keras": "3.15.1"}
    assert ship_pretrained.hardware_words(cpu) == (
        "CPU, AMD EPYC 7B13, 2 cores (tensorflow backend, TensorFlow 2.21.0, Keras 3.15.1)")
    older = {"backend": "tensorflow", "keras": "3.15.1", "cpu_count": 2}
    words = ship_pretrained.hardware_words(older)
    assert words.startswith("CPU, model not recorded, 2 cores") and "None" not in words


def test_a_continued_card_says_which_commit_keeps_the_file_it_started_from(tmp_path):
    """The file a continuation started from is replaced when it ships: the card names the
    newest commit whose version of that path has the recorded SHA-256, and none when no
    commit (or no git checkout) holds it."""
    import hashlib

    import ship_pretrained
    from _common import git_commit_holding

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=tmp_path, capture_output=True, check=True, text=True).stdout

    git("init", "-q")
    model = tmp_path / "saved_models" / "m" / "m.keras"
    model.parent.mkdir(parents=True)
    commits, digests = [], []
    for content in (b"first weights", b"second weights", b"first weights"):
        model.write_bytes(content)
        git("add", "-A")
        git("commit", "-q", "-m", "w")
        commits.append(git("rev-parse", "HEAD").strip())
        digests.append(hashlib.sha256(content).hexdigest())
    model.write_bytes(b"shipped later")  # the continuation replaced it, uncommitted
    assert git_commit_holding(model, digests[1]) == commits[1]
    assert git_commit_holding(model, digests[0]) == commits[2]  # the newest holding it
    assert git_commit_holding(model, "0" * 64) is None
    outside = tmp_path.parent / f"{tmp_path.name}_no_git.keras"
    outside.write_bytes(b"x")
    assert git_commit_holding(outside, "0" * 64) is None

    init = {"path": "saved_models/m/m.keras", "sha256": digests[1], "git_commit": commits[1],
            "steps_before": 500, "trained": {"plan": {"total_steps": 500}, "command": "c",
                                             "hardware": {"backend": "jax", "device": "GPU"}}}
    line = ship_pretrained._continued_from(init)[0]
    assert f"git show {commits[1][:12]}:saved_models/m/m.keras" in line
    assert "git show" not in ship_pretrained._continued_from({**init, "git_commit": None})[0]


def _machine(cpu):
    versions = {"tensorflow": "2.21.0", "keras": "3.15.1", "ai_edge_litert": "2.3.0"}
    return {"cpu": cpu, "cores": 2, "gpus": [], "versions": versions}


def test_appended_rows_keep_the_machine_and_day_they_were_measured_on():
    """`--append` (int8, latency, throughput): a kept row names the machine and day of the run
    that measured it, not of the run that appended; the table tags rows when they differ."""
    import int8

    def row(model, ms):
        return {"model": model, "conversion": "fp32", "float_ops": [], "float_layers": [],
                "mse_keras": 1.0, "mse_tflite": 1.0, "mse_increase": 0.0,
                "latency_ms": {"1": ms}, "bytes": 1000}  # fmt: skip

    earlier = {"machine": _machine("AMD EPYC"), "date": "2026-11-27"}
    older = {**row("demo [run]", 2.0), "measured_on": _common.measured_on(
        _machine("Old CPU"), "2026-11-20")}  # fmt: skip
    rows = _common.append_rows(earlier, [row("radar [radar]", 7.0), older],
                               [row("mmnist [mnist]", 80.0)], _machine("Intel Xeon"))  # fmt: skip
    where = [r["measured_on"] for r in rows]
    assert [w["cpu"] for w in where] == ["AMD EPYC", "Old CPU", "Intel Xeon"]
    assert where[0]["date"] == "2026-11-27" and where[1]["date"] == "2026-11-20"
    assert where[2]["date"] == __import__("time").strftime("%Y-%m-%d")
    table = int8.markdown({"machine": _machine("Intel Xeon"), "threads": [1], "results": rows})
    head = table.splitlines()[0]
    assert "[A] AMD EPYC, 2 cores, 2026-11-27" in head and "[C] Intel Xeon" in head
    assert "[B] Old CPU, 2 cores, 2026-11-20" in head
    assert "| radar [radar] [A] |" in table and "| mmnist [mnist] [C] |" in table
    # One machine: its line, and no tags.
    alone = _common.append_rows(None, [], [row("mmnist [mnist]", 80.0)], _machine("Intel Xeon"))
    legend, tag = _common.machines_legend(alone)
    assert legend.startswith("Intel Xeon, 2 cores, ") and "LiteRT 2.3.0" in legend
    assert tag(alone[0]) == ""
    # Rows written before rows carried a machine take their payload's.
    legend, _ = _common.machines_legend([row("x", 1.0)], earlier)
    assert legend.startswith("AMD EPYC, 2 cores, 2026-11-27")


@pytest.mark.slow  # three toy models compiled on JAX: ~20 s
def test_depthwise_forms_benchmark_times_every_form_side_by_side(tmp_path):
    """`benchmarks/depthwise_forms.py`: one row per depth-wise form for each model, timed
    interleaved, with the ratio to Keras' form; runs on JAX without TensorFlow's machine
    record."""
    pytest.importorskip("jax")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "depthwise_forms.py"), "--presets", "--override",
         'stlight_tiny:{"hidden_dim": 8, "depth": 1}', "--override-batch", "2", "--rounds",
         "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads((tmp_path / "depthwise_forms_jax_cpu.json").read_text())
    assert payload["machine"]["backend"] == "jax" and payload["machine"]["platform"] == "cpu"
    records = payload["records"]
    assert [r["config"] for r in records] == ["keras", "shift_dilated", "shift_all"]
    for r in records:
        assert r["overrides"] == {"hidden_dim": 8, "depth": 1} and r["batch"] == 2
        assert len(r["steps_s"]) == 2 and all(t > 0 for t in r["steps_s"])
        assert r["median_ms"] == pytest.approx(1000 * np.median(r["steps_s"]), abs=0.1)
        base = np.median(records[0]["steps_s"])  # the ratio of the unrounded medians
        assert r["speedup"] == pytest.approx(base / np.median(r["steps_s"]), abs=0.005)
    markdown = (tmp_path / "depthwise_forms_jax_cpu.md").read_text()
    assert '| stlight_tiny {"hidden_dim": 8, "depth": 1} | 2 | shift_dilated |' in markdown
