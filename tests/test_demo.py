"""`kerastp demo --minutes`: the training is sized to the measured step rate and the budget."""

import json
import math

import pytest

from kerastp import cli, demo


def _checked(plan, budget, reserve, step, epoch):
    """The plan's estimate is what the arguments give."""
    available = budget - reserve
    fit = plan["epochs"] * (plan["steps_per_epoch"] * step + epoch)
    assert plan["fit_seconds"] == pytest.approx(fit)
    assert plan["available_seconds"] == pytest.approx(available)
    assert plan["total_steps"] == plan["epochs"] * plan["steps_per_epoch"]
    assert plan["fits"] is (fit <= available + 1e-6)
    return available, fit


def test_plan_fills_the_budget_on_a_fast_machine():
    budget, reserve, step, epoch = 200.0, 25.0, 0.1, 0.6
    plan = demo.plan_training(budget, step, reserve_seconds=reserve, epoch_seconds=epoch)
    available, fit = _checked(plan, budget, reserve, step, epoch)
    assert plan["epochs"] == demo.MAX_EPOCHS
    assert plan["fits"]
    # One more step per epoch would not fit: the budget is used, not wasted.
    assert fit + plan["epochs"] * step > available
    assert plan["steps_per_epoch"] == math.floor((available - 10 * epoch) / (10 * step))


def test_a_slower_machine_gets_fewer_steps_and_epochs_in_the_same_budget():
    budget, reserve = 200.0, 25.0
    fast = demo.plan_training(budget, 0.1, reserve_seconds=reserve, epoch_seconds=0.6)
    slow = demo.plan_training(budget, 0.9, reserve_seconds=reserve, epoch_seconds=6.0)
    available, fit = _checked(slow, budget, reserve, 0.9, 6.0)
    assert slow["fits"]
    assert fit + slow["epochs"] * 0.9 > available
    assert slow["total_steps"] < fast["total_steps"] / 5
    # Validation at each epoch end would eat the budget: fewer epochs, each long enough.
    assert slow["epochs"] * 6.0 <= demo.MAX_EPOCH_WORK_SHARE * available
    assert 1 <= slow["epochs"] < fast["epochs"]
    assert slow["steps_per_epoch"] >= demo.MIN_STEPS_PER_EPOCH


def test_explicit_epochs_or_steps_override_the_sizing():
    sized_steps = demo.plan_training(100, 0.5, epochs=4)
    assert sized_steps["epochs"] == 4 and sized_steps["steps_per_epoch"] == 50
    sized_epochs = demo.plan_training(100, 0.5, steps_per_epoch=30, epoch_seconds=1.0)
    assert sized_epochs["steps_per_epoch"] == 30 and sized_epochs["epochs"] == 6
    both = demo.plan_training(1, 10.0, epochs=3, steps_per_epoch=7)
    assert (both["epochs"], both["steps_per_epoch"], both["fits"]) == (3, 7, False)


def test_a_budget_too_small_still_completes_the_schedule():
    plan = demo.plan_training(1.0, 2.0, reserve_seconds=5.0)
    assert (plan["epochs"], plan["steps_per_epoch"]) == (1, 2)  # one-cycle needs 2 steps
    assert plan["fits"] is False


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"budget_seconds": float("nan")}, "budget_seconds"),
        ({"step_seconds": 0}, "step_seconds"),
        ({"reserve_seconds": -1}, "reserve_seconds"),
        ({"epochs": 0}, "epochs"),
        ({"steps_per_epoch": 1.5}, "steps_per_epoch"),
    ],
)
def test_plan_rejects_bad_values_naming_them(kwargs, name):
    arguments = {"budget_seconds": 100, "step_seconds": 0.1, **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        demo.plan_training(**arguments)


@pytest.mark.parametrize("minutes", [0, -1, float("inf"), "3"])
def test_demo_rejects_a_bad_budget_before_any_work(minutes, tmp_path):
    with pytest.raises(ValueError, match="minutes"):
        demo.run_demo(
            run_dir=str(tmp_path / "d"),
            saved_model_dir=str(tmp_path / "m"),
            tflite_dir=str(tmp_path / "t"),
            minutes=minutes,
        )
    assert list(tmp_path.iterdir()) == []


def test_cli_help_states_the_default_budget():
    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command")
    minutes = next(a for a in subcommands.choices["demo"]._actions if a.dest == "minutes")
    assert minutes.default is None  # run_demo then takes DEFAULT_MINUTES
    assert f"(default {demo.DEFAULT_MINUTES:g})" in minutes.help


def _feasible_minutes(eval_sequences, floor=0.6):
    """The shortest budget (tenths of a minute, at least `floor`) in which this machine can
    run a sized demo of `MIN_STEPS_PER_EPOCH` steps, from a quick measurement of its speed.

    The demo's fixed costs scale with the first (traced) step, which differs 2x between the
    shared CI machines (3.4 s and 7.2 s); a fixed 0.6-min budget fitted one and not the other.
    Everything is taken at 1.5x what was measured, for a machine busier during the demo.
    """
    rate = demo.measure_step_rate("stlight_tiny", seconds=1.0)
    busy = {**rate, "first_step_seconds": 1.5 * rate["first_step_seconds"],
            "step_seconds": 1.5 * rate["step_seconds"]}  # fmt: skip
    # Pretrained forecasts and baselines (~3 s), the calibration's traced step, the demo's own
    # reserve (the fit's trace, export, evaluation), then the steps and two epochs' saves.
    seconds = (
        5.0
        + busy["first_step_seconds"]
        + demo._reserve_seconds(busy, eval_sequences)
        + demo.MIN_STEPS_PER_EPOCH * busy["step_seconds"]
        + 2 * demo._EPOCH_SAVE_SECONDS
    ) / (1.0 - demo.SAFETY_SHARE - demo._CALIBRATION_SHARE)
    return max(floor, math.ceil(seconds / 6.0) / 10.0)


def test_stops_early_when_the_next_epoch_and_the_rest_would_end_late():
    # On plan (10-s epochs): 60 + 10 + 5 = 75 <= 100, go on; exactly at the end is on time.
    assert not demo.stops_early(60, 10, 10, 5, end=100)
    assert not demo.stops_early(85, 10, 10, 5, end=100)
    assert demo.stops_early(86, 10, 10, 5, end=100)
    # Twice as slow as planned: the work after training is taken twice as slow too.
    assert not demo.stops_early(60, 20, 10, 5, end=100)  # 60 + 20 + 10 = 90
    assert demo.stops_early(75, 20, 10, 5, end=100)  # 75 + 20 + 10 = 105
    # Faster than planned never shortens the estimate of the work after training.
    assert demo.stops_early(90, 5, 10, 6, end=100)  # 90 + 5 + 6 = 101


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _drive(callback, epoch_seconds, epochs):
    """Runs `callback`'s epoch hooks as `fit` would, each epoch taking its seconds; returns
    the epochs run (the fit stops at the end of the epoch that sets `stop_training`)."""
    from types import SimpleNamespace

    model = SimpleNamespace(stop_training=False)
    callback.set_model(model)
    callback.set_params({"epochs": epochs})
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        callback.clock.now += epoch_seconds[epoch]
        callback.on_epoch_end(epoch)
        if model.stop_training:
            return epoch + 1
    return epochs


def test_deadline_stop_lets_a_run_on_plan_finish_and_stops_one_that_slowed():
    # Fit from t=30: five 10-s epochs end at 80, with 5 s of work after: on time for 100.
    clock = _Clock()
    clock.now = 30.0
    on_plan = demo.DeadlineStop(100.0, planned_epoch_seconds=10, after_fit_seconds=5, clock=clock)
    assert _drive(on_plan, [10] * 5, 5) == 5 and on_plan.stopped_after is None
    # Twice as slow from the third epoch: ends at 40, 50, 70, then at 90 a fifth would end at
    # 110 (+ 10 after): it stops after four epochs.
    clock.now = 30.0
    slowed = demo.DeadlineStop(100.0, planned_epoch_seconds=10, after_fit_seconds=5, clock=clock)
    assert _drive(slowed, [10, 10, 20, 20, 20], 5) == 4 and slowed.stopped_after == 4
    assert [(e["seconds"], e["seconds_left"]) for e in slowed.epochs] == [
        (10, 60), (10, 50), (20, 30), (20, 10)
    ]  # fmt: skip
    # The pace is the longer of the last two epochs: after a 25-s epoch (25 + 25 + 2.5 x 5 <=
    # 65, go on) and a 5-s one, it still counts 25 s (30 + 25 + 12.5 > 65), where the last
    # epoch alone would have let a third start (30 + 5 + 5).
    clock.now = 0.0
    jumpy = demo.DeadlineStop(65.0, planned_epoch_seconds=10, after_fit_seconds=5, clock=clock)
    assert _drive(jumpy, [25, 5, 5], 3) == 2 and jumpy.stopped_after == 2
    assert not demo.stops_early(30, 5, 10, 5, end=65)
    # The last epoch is never cut: there is nothing left to skip.
    clock.now = 95.0
    late = demo.DeadlineStop(100.0, planned_epoch_seconds=10, after_fit_seconds=5, clock=clock)
    assert _drive(late, [10], 1) == 1 and late.stopped_after is None
    with pytest.raises(ValueError, match="planned_epoch_seconds"):
        demo.DeadlineStop(100.0, planned_epoch_seconds=0, after_fit_seconds=5)


def test_a_run_stopped_by_the_deadline_is_finished_with_what_it_trained(tmp_path):
    """In `training.train`: the fit ends after the first epoch, whose checkpoints and history
    row are written, and the run is complete (no backup left to resume)."""
    import csv

    from conftest import TINY_RUN

    from kerastp import runs, training

    past = demo.DeadlineStop(-1.0, planned_epoch_seconds=1.0, after_fit_seconds=0.0)
    result = training.train(**{**TINY_RUN, "epochs": 3, "steps_per_epoch": 2,
                               "eval_sequences": 0}, run_dir=str(tmp_path / "run"),
                            callbacks=[past])  # fmt: skip
    assert past.stopped_after == 1
    assert int(result["model"].optimizer.iterations.numpy()) == 2
    with open(tmp_path / "run" / runs.HISTORY_FILE) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0]
    assert (tmp_path / "run" / runs.CHECKPOINTS_DIR / "last.keras").is_file()
    assert not (tmp_path / "run" / runs.BACKUP_DIR).exists()


def _summary(total_s, fit_s, within_budget):
    budget = {"minutes": 1, "budget_s": 60.0, "planned_fit_s": 20.5, "within_budget": within_budget,
              "measured": {"steps_per_second": 5.58, "first_step_seconds": 3.5}}  # fmt: skip
    return {"budget": budget, "timings": {"total_s": total_s, "fit_s": fit_s}}


def test_over_budget_note_says_by_how_much_and_what_ran_long():
    assert demo.over_budget_note(_summary(51.2, 24.3, True)) is None
    assert demo.over_budget_note({"budget": None, "timings": {}}) is None  # epochs given
    note = demo.over_budget_note(_summary(63.9, 35.0, False))
    assert note.startswith("4 s over the 1-min budget: the fit took 35 s against about 24 s")
    assert "5.6 steps/s measured" in note


@pytest.mark.slow
def test_budgeted_demo_plans_within_its_budget_and_records_what_it_trained(tmp_path, monkeypatch):
    """The plan made from the measured rate ends inside the budget, the record of what was
    spent is truthful, and the steps taken are the plan's (or, when the machine slowed down
    and the demo stopped early, the epochs it says it trained).

    Whether the demo then ends on time depends on the machine: that is a benchmark
    (`benchmarks/demo_budget.py`), not a timed test. CI's other test worker shares the two
    cores and has made the fit 2.3x slower than measured.
    """
    from kerastp import saving

    monkeypatch.chdir(tmp_path)
    eval_sequences = 16
    minutes = _feasible_minutes(eval_sequences)
    summary = demo.run_demo(
        run_dir="d", eval_sequences=eval_sequences, saved_model_dir="m", tflite_dir="t", verbose=0,
        minutes=minutes,
    )  # fmt: skip
    budget, timings = summary["budget"], summary["timings"]
    report = json.dumps({"timings": timings, "budget": budget}, indent=1)
    assert budget["minutes"] == minutes and budget["budget_s"] == 60 * minutes, report
    assert budget["fits"], report
    assert budget["measured"]["steps_per_second"] > 0
    assert budget["measured"]["timed_steps"] >= 3
    # The plan: what ran before training, the reserve and the planned fit leave the share
    # kept free for a busy machine.
    planned_end = sum(
        budget[key] for key in ("elapsed_before_training_s", "reserve_s", "planned_fit_s")
    )
    assert planned_end <= (1 - demo.SAFETY_SHARE) * budget["budget_s"] + 1e-6, report
    assert budget["planned_fit_s"] > 0 and budget["reserve_s"] > 0, report
    # The record: the stages add up to the total and `within_budget` compares it truthfully.
    stages = sum(v for k, v in timings.items() if k not in ("fit_s", "total_s"))
    assert stages <= timings["total_s"] and timings["fit_s"] <= timings["train_and_evaluate_s"]
    assert budget["within_budget"] == (timings["total_s"] <= budget["budget_s"]), report
    total = summary["epochs"] * summary["steps_per_epoch"]
    assert summary["total_steps"] == total >= 2
    # The one-cycle schedule was sized to the run; every planned step was taken, unless the
    # demo stopped early to end on time, and then it says how many epochs it trained.
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    assert (config["epochs"], config["steps_per_epoch"]) == (
        summary["epochs"],
        summary["steps_per_epoch"],
    )
    stopped = budget["stopped_after_epochs"]
    assert summary["schedule_complete"] == (stopped is None), report
    assert summary["epochs_trained"] == (summary["epochs"] if stopped is None else stopped)
    assert summary["trained_steps"] == summary["epochs_trained"] * summary["steps_per_epoch"]
    model = saving.load_model(tmp_path / "d" / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == summary["trained_steps"]
    written = json.loads((tmp_path / "d" / "demo.json").read_text())
    assert written["budget"]["measured"]["step_seconds"] == pytest.approx(
        budget["measured"]["step_seconds"]
    )
    # A second demo in the same run directory measures and sizes afresh (a different plan
    # than the first's, which the run's config check would refuse) and replaces the first.
    again = demo.run_demo(
        run_dir="d", eval_sequences=eval_sequences, saved_model_dir="m", tflite_dir="t", verbose=0,
        minutes=minutes,
    )  # fmt: skip
    assert again["budget"] is not None and again["budget"]["fits"]
    model = saving.load_model(tmp_path / "d" / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == again["trained_steps"]


def test_an_earlier_demo_is_replaced_when_finished_and_resumed_when_interrupted(tmp_path):
    """`_earlier_demo`: nothing there, a sized demo; a finished demo (demo.json), its run files
    removed and other files kept; an interrupted one, its recorded plan and no new sizing."""
    run = tmp_path / "d"
    assert demo._earlier_demo(run, None, None, verbose=0) == (None, None, True)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch_1.keras").write_text("x")
    (run / "config.json").write_text(json.dumps({"epochs": 7, "steps_per_epoch": 33}))
    (run / "history.csv").write_text("epoch,loss\n")
    (run / "notes.txt").write_text("mine")
    assert demo._earlier_demo(run, None, None, verbose=0) == (7, 33, False)
    assert (run / "config.json").is_file()  # an interrupted run is kept to resume
    (run / "demo.json").write_text("{}")
    assert demo._earlier_demo(run, None, None, verbose=0) == (None, None, True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_demo_budget_benchmark_runs_the_command_and_loads_the_machine_after_the_plan(tmp_path):
    """benchmarks/demo_budget.py: a smoke run of its `late` condition (the load starts once
    the demo has printed its plan), so the script cannot rot."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_budget.py"
    argv = [sys.executable, str(script), "--minutes", "0.6", "--conditions", "late",
            "--eval-sequences", "16", "--out-dir", str(tmp_path)]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    payload = json.loads((tmp_path / "demo_budget.json").read_text())
    (row,) = payload["results"]
    assert (row["minutes"], row["condition"], row["eval_sequences"]) == (0.6, "late", 16)
    assert row["measured_on"]["cores"] == payload["machine"]["cores"]
    # The load started after the plan, before the process ended.
    assert 0 < row["load_started_s"] < row["process_s"]
    timings = row["timings"]
    assert row["elapsed_before_training_s"] < timings["total_s"] < row["process_s"]
    assert row["within_budget"] == (timings["total_s"] <= 60 * 0.6)
    assert row["fit_over_planned"] == pytest.approx(timings["fit_s"] / row["planned_fit_s"])
    assert row["epochs"] * row["steps_per_epoch"] >= 2 and row["test_mse"] > 0
    assert 1 <= row["epochs_trained"] <= row["epochs"]
    assert row["schedule_complete"] == (row["epochs_trained"] == row["epochs"])
    table = (tmp_path / "demo_budget.md").read_text()
    assert "| 0.6 | late |" in table
