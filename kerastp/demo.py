"""The main job: train a small model on built-in data, evaluate, export, draw the forecast.

`run_demo` fits the training to a wall-time budget (`minutes`): it first measures how fast
this machine takes the preset's training steps on the demo's data (`measure_step_rate`: a
short `fit` of a throwaway copy of the model, after its traced first step), then sizes the
run with `plan_training` so that training, evaluation, export and pictures end within the
budget with the one-cycle learning-rate schedule complete. A slower machine gets fewer steps,
not a longer demo; explicit `epochs` / `steps_per_epoch` override the sizing.

A machine that gets slower after the measurement (another job starts) would push a multi-epoch
demo past its budget: at each epoch end the demo stops training early when the next epoch and
the work after training, at the pace just seen, would end after the budget
(`DeadlineStop`); the learning-rate schedule is then unfinished and the record says so.
"""

import math
import shutil
import time
from pathlib import Path

import numpy as np

from kerastp.backend import require_keras

keras = require_keras()  # quietly: a first import of TensorFlow logs natively

from kerastp import export, registry, runs, training, visualize  # noqa: E402
from kerastp.data import split_frames  # noqa: E402
from kerastp.data.sources import get_source  # noqa: E402
from kerastp.evaluation import evaluate_arrays  # noqa: E402
from kerastp.saving import read_json, write_json  # noqa: E402
from kerastp.validation import check_output_dir, finite_number, positive_int  # noqa: E402

#: Default wall-time budget of `kerastp demo` in minutes: baselines, measuring the step rate,
#: training, evaluating, exporting and drawing (from when the CLI starts loading the demo).
DEFAULT_MINUTES = 3.5
#: Most epochs of a budgeted run (each ends with validation, checkpoints and a backup).
MAX_EPOCHS = 10
#: Fewest optimizer steps per epoch when the budget allows several epochs.
MIN_STEPS_PER_EPOCH = 20
#: Largest share of the training time that the per-epoch work (validation, checkpoints) may
#: take; fewer epochs when it would take more.
MAX_EPOCH_WORK_SHARE = 0.1
#: The part of the budget kept free for what the estimates miss (a busy machine). On 2 shared
#: CPU cores the fit has run from 0.92x to 1.18x the time planned from the 4-s calibration
#: (`kerastp demo`, 2026-11-27 and 11-28: 147 s against 160 s planned; 194 s against 172 s,
#: which ended 7 s over a 3.5-min budget with 7% kept free).
SAFETY_SHARE = 0.15
#: Seconds spent timing training steps in `measure_step_rate` (after the traced first step);
#: a budget under about two minutes spends 3% of itself.
CALIBRATION_SECONDS = 4.0
_CALIBRATION_SHARE = 0.03

# Costs estimated from the calibration, as multiples of what it measured; from `kerastp demo`
# on 2 CPU cores with stlight_tiny (demo.json's timings), rounded up: a forward batch
# (validation, evaluation) costs about 0.3 of a training step; the fit's build and traces
# about one calibration first step (build, trace and first step: 3.4 s there), export
# (.keras, SavedModel and TFLite, each reloaded and verified) and pictures about one more
# (3.5 s); scoring a test sequence about 3 ms beyond its forward pass.
_FORWARD_SHARE = 0.35
_FIT_TRACE_FIRST_STEPS = 1.0
_EXPORT_FIRST_STEPS = 1.2
_EPOCH_SAVE_SECONDS = 0.3  # best.keras + last.keras + state.npz + history row, each epoch
_EVAL_SECONDS_PER_SEQUENCE = 0.004


#: The pretrained model the demo shows first, on the example sequences shipped with it.
PRETRAINED_MODEL = "mmnist"


def pretrained_forecasts(name=PRETRAINED_MODEL):
    """The shipped pretrained model's forecasts of the test sequences shipped with it.

    No training and no download: the model and its examples are verified shipped files
    (`kerastp.pretrained`).

    Returns:
        dict with `name`, `past` and `future` (N, 10, 64, 64, 1) in [0, 1], `forecast`,
        `metrics` (OpenSTL's, on those N sequences), `attribution` and `seconds`.
    """
    from kerastp.evaluation.frames import ForecastEvaluator
    from kerastp.forecasters import from_preset

    start = time.perf_counter()
    model = from_preset(name)
    past, future, attribution = visualize.shipped_test_sequences(
        name, model.input_frames, model.output_frames
    )
    forecast = np.asarray(model.predict(past, verbose=0), np.float32)
    evaluator = ForecastEvaluator()
    evaluator.update(future, forecast)
    scores = evaluator.result()
    return {
        "name": name,
        "past": past,
        "future": future,
        "forecast": forecast,
        "metrics": {k: scores[k] for k in ("mse", "mae", "ssim", "psnr", "n_sequences")},
        "attribution": attribution,
        "seconds": time.perf_counter() - start,
    }


def baselines(data="procedural", num_sequences=1000, mnist_path=None):
    """Metrics of two trivial forecasts on the standard test set: repeat the last input frame,
    and predict the mean frame of the inputs. A trained model must beat both."""
    sequences = get_source(data, mnist_path=mnist_path).test_sequences(num_sequences)
    past, future = split_frames(np.asarray(sequences), 10, 10)
    last = np.repeat(past[:, -1:], future.shape[1], axis=1)
    mean = np.repeat(past.mean(axis=1, keepdims=True), future.shape[1], axis=1)
    return {
        "repeat_last_frame": evaluate_arrays(future, last),
        "mean_of_inputs": evaluate_arrays(future, mean),
    }


def plan_training(
    budget_seconds,
    step_seconds,
    reserve_seconds=0.0,
    epoch_seconds=0.0,
    epochs=None,
    steps_per_epoch=None,
    max_epochs=MAX_EPOCHS,
    min_steps_per_epoch=MIN_STEPS_PER_EPOCH,
):
    """Epochs and steps per epoch whose training ends `reserve_seconds` before the budget.

    The fit is estimated at `step_seconds` per optimizer step plus `epoch_seconds` per epoch
    (validation, checkpoints). Without explicit values the plan takes the most epochs (up to
    `max_epochs`) that leave each epoch at least `min_steps_per_epoch` steps and the per-epoch
    work at most `MAX_EPOCH_WORK_SHARE` of the time, then as many steps as fit. Given
    `epochs` or `steps_per_epoch`, only the other is sized; given both, they are returned
    as they are. The one-cycle schedule needs two steps: a plan never has fewer, even when
    the budget buys none (`fits` then says False).

    Returns:
        dict with `epochs`, `steps_per_epoch`, `total_steps`, `fit_seconds` (the estimate),
        `available_seconds` (budget minus reserve) and `fits` (the estimate is within it).

    Example:
    >>> plan = plan_training(180, 0.1, reserve_seconds=30, epoch_seconds=0.6)
    >>> plan["epochs"], plan["steps_per_epoch"]
    (10, 144)
    """
    budget_seconds = finite_number("budget_seconds", budget_seconds)
    step_seconds = finite_number("step_seconds", step_seconds, 0, strict=True)
    reserve_seconds = finite_number("reserve_seconds", reserve_seconds, 0)
    epoch_seconds = finite_number("epoch_seconds", epoch_seconds, 0)
    if epochs is not None:
        positive_int("epochs", epochs)
    if steps_per_epoch is not None:
        positive_int("steps_per_epoch", steps_per_epoch)
    positive_int("max_epochs", max_epochs)
    positive_int("min_steps_per_epoch", min_steps_per_epoch)
    available = budget_seconds - reserve_seconds

    def steps_for(num_epochs):
        return math.floor((available - num_epochs * epoch_seconds) / (num_epochs * step_seconds))

    if epochs is not None and steps_per_epoch is not None:
        pass
    elif epochs is not None:
        steps_per_epoch = max(steps_for(epochs), 1)
    elif steps_per_epoch is not None:
        epochs = max(math.floor(available / (steps_per_epoch * step_seconds + epoch_seconds)), 1)
    else:
        epochs = 1
        for candidate in range(max_epochs, 1, -1):
            if (
                candidate * epoch_seconds <= MAX_EPOCH_WORK_SHARE * available
                and steps_for(candidate) >= min_steps_per_epoch
            ):
                epochs = candidate
                break
        steps_per_epoch = max(steps_for(epochs), 1)
    if epochs * steps_per_epoch < 2:  # the one-cycle schedule's minimum
        steps_per_epoch = 2
    total = epochs * steps_per_epoch
    fit_seconds = total * step_seconds + epochs * epoch_seconds
    return {
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total,
        "fit_seconds": fit_seconds,
        "available_seconds": available,
        "fits": fit_seconds <= available + 1e-9 * max(1.0, abs(available)),
    }


def stops_early(now, epoch_seconds, planned_epoch_seconds, after_fit_seconds, end):
    """True when one more epoch, then the work after training, would end after `end`.

    Both take the pace just seen: the next epoch as long as `epoch_seconds` (`DeadlineStop`
    passes the longer of the last two epochs: a shared machine's pace jumps), the work after
    training (`after_fit_seconds`, as planned) slowed by the same factor that the epoch ran
    over its plan (`planned_epoch_seconds`), never sped up.
    """
    slowdown = max(1.0, epoch_seconds / planned_epoch_seconds)
    return now + epoch_seconds + slowdown * after_fit_seconds > end


class DeadlineStop(keras.callbacks.Callback):
    """Stops a fit at an epoch end when the next epoch would make the demo end after `end` (a
    `time.perf_counter()` reading), judged by `stops_early`. `stopped_after` is then the
    number of epochs trained (else None); `epochs` records each epoch's seconds and the
    seconds then left before `end`. Add it last: kerastp's epoch-end checkpoints, history
    row and backup are written before it stops the fit."""

    def __init__(self, end, planned_epoch_seconds, after_fit_seconds, clock=time.perf_counter):
        super().__init__()
        self.end = finite_number("end", end)
        self.planned_epoch_seconds = finite_number(
            "planned_epoch_seconds", planned_epoch_seconds, 0, strict=True
        )
        self.after_fit_seconds = finite_number("after_fit_seconds", after_fit_seconds, 0)
        self.clock = clock
        self.stopped_after = None
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self._began = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        took = now - self._began
        self.epochs.append({"epoch": epoch, "seconds": took, "seconds_left": self.end - now})
        if epoch + 1 >= self.params["epochs"]:  # the last epoch: nothing left to skip
            return
        pace = max(e["seconds"] for e in self.epochs[-2:])
        if stops_early(now, pace, self.planned_epoch_seconds, self.after_fit_seconds, self.end):
            self.model.stop_training = True
            self.stopped_after = epoch + 1


def measure_step_rate(
    preset="stlight_tiny",
    data="procedural",
    batch_size=None,
    seconds=CALIBRATION_SECONDS,
    mnist_path=None,
    seed=0,
    min_steps=3,
    max_steps=500,
):
    """Seconds per training step of `preset` on the demo's data, measured as `train` runs.

    Builds a throwaway copy of the model, compiles it as `kerastp.training.train` does and
    fits it on the same `tf.data` training stream; the first step (tracing) is timed apart,
    then steps are timed until `seconds` have passed (at least `min_steps`, at most
    `max_steps`). Writes nothing; the Keras session is cleared afterwards, so the model
    trained next is built exactly as without this measurement.

    Returns:
        dict with `step_seconds` (mean of the timed steps), `steps_per_second`,
        `first_step_seconds` (build, trace and first step), `timed_steps`, `batch_size` and
        `seconds` (the whole measurement).
    """
    import keras

    start = time.perf_counter()
    seconds = finite_number("seconds", seconds, 0)
    positive_int("min_steps", min_steps)
    positive_int("max_steps", max_steps)
    if max_steps <= min_steps:
        raise ValueError(f"`max_steps` must exceed min_steps={min_steps}, got {max_steps!r}")
    settings = registry.get_preset(preset)["training"]
    batch_size = positive_int(
        "batch_size", settings["batch_size"] if batch_size is None else batch_size
    )
    source = get_source(data, mnist_path=mnist_path, seed=seed)
    keras.utils.set_random_seed(seed)
    model = registry.build_model(preset)
    model.compile(learning_rate=settings["max_learning_rate"], total_steps=max_steps + 1)
    stream, _ = source.training_stream(model, batch_size, max_steps + 1)

    class _StepClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.marks = []

        def on_train_batch_end(self, batch, logs=None):
            self.marks.append(time.perf_counter())
            timed = len(self.marks) - 1  # steps after the first
            if timed >= min_steps and self.marks[-1] - self.marks[0] >= seconds:
                self.model.stop_training = True

    clock = _StepClock()
    model.fit(stream, epochs=1, steps_per_epoch=max_steps + 1, callbacks=[clock], verbose=0)
    steps = np.diff(clock.marks)
    step_seconds = float(np.mean(steps))  # what a run of many steps adds up to
    result = {
        "step_seconds": step_seconds,
        "steps_per_second": 1.0 / step_seconds,
        "first_step_seconds": clock.marks[0] - start,
        "timed_steps": len(steps),
        "batch_size": batch_size,
    }
    del model, stream
    keras.backend.clear_session()
    result["seconds"] = time.perf_counter() - start
    return result


def _reserve_seconds(rate, eval_sequences):
    """Estimated seconds of everything after the calibration but the training steps."""
    forward = _FORWARD_SHARE * rate["step_seconds"]
    batches = math.ceil(eval_sequences / rate["batch_size"])
    return (
        (_FIT_TRACE_FIRST_STEPS + _EXPORT_FIRST_STEPS) * rate["first_step_seconds"]
        + batches * forward
        + _EVAL_SECONDS_PER_SEQUENCE * eval_sequences
    )


def _after_fit_seconds(rate, eval_sequences):
    """Estimated seconds of the work after training: the reserve less the fit's trace."""
    return (
        _reserve_seconds(rate, eval_sequences) - _FIT_TRACE_FIRST_STEPS * rate["first_step_seconds"]
    )


def _epoch_seconds(rate, val_sequences):
    """Estimated seconds of the work at each epoch end: validation and saves."""
    forward = _FORWARD_SHARE * rate["step_seconds"]
    return math.ceil(val_sequences / rate["batch_size"]) * forward + _EPOCH_SAVE_SECONDS


def over_budget_note(summary):
    """None when the demo of `summary` (`run_demo`'s result) ended within its budget or had
    none; else a line saying by how much it ran over and what ran longer than planned."""
    budget = summary.get("budget")
    if budget is None or budget["within_budget"]:
        return None
    timings = summary["timings"]
    over = timings["total_s"] - budget["budget_s"]
    # The plan's fit excludes the fit's first (traced) step, which the reserve holds.
    planned = (
        budget["planned_fit_s"] + _FIT_TRACE_FIRST_STEPS * budget["measured"]["first_step_seconds"]
    )
    return (
        f"{over:.0f} s over the {budget['minutes']:g}-min budget: the fit took "
        f"{timings['fit_s']:.0f} s against about {planned:.0f} s planned from "
        f"{budget['measured']['steps_per_second']:.1f} steps/s measured first (was the "
        "machine busier after the measurement?)"
    )


def _comparison_picture(pretrained, model, path):
    """One picture: a shipped test sequence, the pretrained forecast and the demo model's,
    each labelled with its scores on the shipped sequences."""
    from kerastp.evaluation.frames import ForecastEvaluator

    forecast = np.asarray(model.predict(pretrained["past"], verbose=0), np.float32)
    evaluator = ForecastEvaluator()
    evaluator.update(pretrained["future"], forecast)
    trained = evaluator.result()
    scores = {
        pretrained["name"]: pretrained["metrics"],
        model.name: {k: trained[k] for k in ("mse", "mae", "ssim", "psnr", "n_sequences")},
    }
    rows = [
        (
            f"{label} MSE {scores[label]['mse']:.0f} SSIM {scores[label]['ssim']:.2f}",
            frames[0],
        )
        for label, frames in ((pretrained["name"], pretrained["forecast"]), (model.name, forecast))
    ]
    written = visualize.save_comparison_strip(
        pretrained["past"][0], pretrained["future"][0], rows, path
    )
    return {"path": str(written), "scores": scores}


#: What a demo run writes in its run directory (besides the pictures, which are rewritten).
_DEMO_RUN_FILES = (runs.CONFIG_FILE, runs.MODEL_FILE, runs.METRICS_FILE, runs.HISTORY_FILE,
                   "demo.json", runs.BACKUP_DIR, runs.CHECKPOINTS_DIR)  # fmt: skip


def _earlier_demo(run_dir, epochs, steps_per_epoch, verbose):
    """What an earlier demo left in `run_dir` means for this one, whose training is sized to
    the step rate it measures (so a second demo's plan differs from the first's):

    - a finished demo (its demo.json written) is replaced: its training files are removed and
      the new demo trains from scratch;
    - an interrupted one (a run config without demo.json) is resumed with the epochs and
      steps per epoch it recorded, instead of a new measurement.

    Returns (epochs, steps_per_epoch, sized) for the rest of the demo.
    """
    run_dir = Path(run_dir)
    config_file = run_dir / runs.CONFIG_FILE
    if not config_file.is_file():
        return epochs, steps_per_epoch, True
    if (run_dir / "demo.json").is_file():
        if verbose:
            print(f"{run_dir} holds a finished demo: this one replaces it", flush=True)
        for name in _DEMO_RUN_FILES:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        return epochs, steps_per_epoch, True
    recorded = read_json(config_file)
    if verbose:
        print(f"{run_dir} holds an interrupted demo: resuming its {recorded['epochs']} epochs "
              f"x {recorded['steps_per_epoch']} steps", flush=True)  # fmt: skip
    return recorded["epochs"], recorded["steps_per_epoch"], False


def run_demo(
    run_dir="runs/demo",
    preset="stlight_tiny",
    data="procedural",
    epochs=None,
    steps_per_epoch=None,
    eval_sequences=500,
    saved_model_dir="saved_models",
    tflite_dir="tflite",
    mnist_path=None,
    seed=0,
    verbose=1,
    minutes=DEFAULT_MINUTES,
    started=None,
):
    """Trains `preset`, evaluates it, exports `.keras` + SavedModel + TFLite (each verified),
    and writes `<run_dir>/forecast.png` and `.gif`, all within `minutes`.

    Args:
        epochs, steps_per_epoch: None sizes the training to the budget (see the module
            docstring); a value is used as given (both given: no measurement, no budget).
        minutes: wall-time budget of the whole demo, from `started`; None means
            `DEFAULT_MINUTES`.
        started: the `time.perf_counter()` reading the budget counts from (default: this
            call; the CLI passes the moment it started loading the demo).

    Returns:
        dict with the test metrics, the trivial baselines, the artifact paths, the picture
        paths, the epochs and steps trained, the wall time of each stage and the budget (the
        measured step rate, the planned and the spent seconds; None when both `epochs` and
        `steps_per_epoch` were given); also written to `<run_dir>/demo.json`.
    """
    started = time.perf_counter() if started is None else started
    check_output_dir(saved_model_dir, "saved_model_dir")
    check_output_dir(tflite_dir, "tflite_dir")
    sized = epochs is None or steps_per_epoch is None
    if sized:
        minutes = DEFAULT_MINUTES if minutes is None else minutes
        minutes = finite_number("minutes", minutes, 0, strict=True)
    settings = {
        "preset": preset,
        "data": data,
        "mnist_path": mnist_path,
        "run_dir": run_dir,
        "eval_sequences": eval_sequences,
        "seed": seed,
        "verbose": verbose,
    }
    # Every setting is checked (and the data found) before any work; nothing is written.
    config = training.TrainConfig(
        **settings, epochs=epochs, steps_per_epoch=steps_per_epoch
    ).resolved()
    timings = {}
    if sized:
        epochs, steps_per_epoch, sized = _earlier_demo(run_dir, epochs, steps_per_epoch, verbose)

    # First the shipped pretrained model, on the test sequences shipped with it (seconds).
    pretrained = None
    try:
        pretrained = pretrained_forecasts()
    except (FileNotFoundError, ValueError) as error:  # missing or altered shipped files
        if verbose:
            print(f"Pretrained {PRETRAINED_MODEL!r} not shown: {error}", flush=True)
    if pretrained is not None:
        timings["pretrained_s"] = pretrained["seconds"]
        if verbose:
            m = pretrained["metrics"]
            print(
                f"Pretrained {PRETRAINED_MODEL!r} on {m['n_sequences']} shipped MNIST test "
                f"sequences: MSE {m['mse']:.1f}, SSIM {m['ssim']:.3f}",
                flush=True,
            )

    stage = time.perf_counter()
    trivial = baselines(data, eval_sequences, mnist_path)
    timings["baselines_s"] = time.perf_counter() - stage

    budget = None
    if sized:
        budget_seconds = 60.0 * minutes
        rate = measure_step_rate(
            preset,
            data,
            batch_size=config.batch_size,
            seconds=min(CALIBRATION_SECONDS, _CALIBRATION_SHARE * budget_seconds),
            mnist_path=mnist_path,
            seed=seed,
        )
        timings["calibration_s"] = rate["seconds"]
        elapsed = time.perf_counter() - started
        reserve = _reserve_seconds(rate, eval_sequences)
        plan = plan_training(
            budget_seconds * (1.0 - SAFETY_SHARE) - elapsed,
            rate["step_seconds"],
            reserve_seconds=reserve,
            epoch_seconds=_epoch_seconds(rate, config.val_sequences),
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
        )
        epochs, steps_per_epoch = plan["epochs"], plan["steps_per_epoch"]
        budget = {
            "minutes": minutes,
            "budget_s": budget_seconds,
            "measured": rate,
            "elapsed_before_training_s": elapsed,
            "reserve_s": reserve,
            "planned_fit_s": plan["fit_seconds"],
            "fits": plan["fits"],
        }
        if verbose:
            note = "" if plan["fits"] else " (the budget is too small: the shortest run)"
            print(
                f"Measured {rate['steps_per_second']:.1f} steps/s of {preset}: training "
                f"{epochs} epochs x {steps_per_epoch} steps to end within {minutes:g} min{note}",
                flush=True,
            )

    deadline = []
    if budget is not None and epochs > 1:
        deadline.append(
            DeadlineStop(
                started + budget["budget_s"],
                planned_epoch_seconds=plan["fit_seconds"] / epochs,
                after_fit_seconds=_after_fit_seconds(rate, eval_sequences),
            )
        )
    stage = time.perf_counter()
    result = training.train(
        **settings, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=deadline
    )
    timings["train_and_evaluate_s"] = time.perf_counter() - stage
    model = result["model"]
    epochs_trained = epochs
    if deadline and deadline[0].stopped_after is not None:
        epochs_trained = deadline[0].stopped_after
        if verbose:
            print(
                f"Stopped after {epochs_trained} of {epochs} epochs to end within {minutes:g} "
                "min: the machine got slower than measured (learning-rate schedule unfinished)",
                flush=True,
            )
    if budget is not None:
        budget["stopped_after_epochs"] = None if epochs_trained == epochs else epochs_trained
        budget["epoch_ends"] = deadline[0].epochs if deadline else None

    stage = time.perf_counter()
    sequences = get_source(data, mnist_path=mnist_path).test_sequences(8)
    past, future = split_frames(np.asarray(sequences), model.input_frames, model.output_frames)
    artifacts = export.export_all(
        model,
        preset,
        saved_model_dir=saved_model_dir,
        tflite_dir=tflite_dir,
        preset=preset,
        probe=past[:3],
    )
    timings["export_s"] = time.perf_counter() - stage

    stage = time.perf_counter()
    png, gif, _ = visualize.save_forecast_pictures(
        model, past[0], future[0], Path(run_dir) / "forecast.png"
    )
    comparison = None
    if pretrained is not None:
        comparison = _comparison_picture(pretrained, model, Path(run_dir) / "comparison.png")
    timings["pictures_s"] = time.perf_counter() - stage
    timings["fit_s"] = result["seconds"]
    timings["total_s"] = time.perf_counter() - started
    if budget is not None:
        budget["within_budget"] = timings["total_s"] <= budget["budget_s"]
    summary = {
        "preset": preset,
        "data": data,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": epochs * steps_per_epoch,
        # Fewer when the demo stopped early to end on time (`DeadlineStop`).
        "epochs_trained": epochs_trained,
        "trained_steps": epochs_trained * steps_per_epoch,
        "schedule_complete": epochs_trained == epochs,
        "metrics": result["metrics"],
        "baselines": trivial,
        "artifacts": {kind: str(path) for kind, (path, _) in artifacts.items()},
        "parity": {kind: sidecar["parity"] for kind, (_, sidecar) in artifacts.items()},
        "pictures": [str(png), str(gif)] + ([comparison["path"]] if comparison else []),
        "pretrained": None if comparison is None else comparison["scores"],
        "timings": timings,
        "budget": budget,
    }
    write_json(Path(run_dir) / "demo.json", summary)
    return summary
