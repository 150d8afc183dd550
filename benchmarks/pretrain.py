"""Trains a pretrained kerastp model from its recorded recipe, on any Keras backend.

    python benchmarks/pretrain.py mmnist --out DIR [--minutes M | --steps N] [--dtype D]

`RECIPES` holds each shipped model's recipe (architecture, data, batch, schedule, seed). The
run writes DIR/NAME.keras (weights without optimizer state: the shipped file) and
DIR/recipe.json: the recipe, the plan actually run (steps, epochs, dtype), the step rate,
compile and wall times, the hardware and the score on the first `--test-sequences` sequences
of the fixed test set. `--steps N` repeats a run exactly (the recorded `total_steps`);
`--minutes M` sizes the one-cycle schedule to the measured step rate, as `kerastp demo`
does: a probe of `probe_steps` steps at the schedule's starting learning rate measures it.

A cut-off run resumes from DIR/backup (Keras' `BackupAndRestore`, one backup per epoch)
when started again with the same arguments and the recorded plan.

`--init FILE.keras` continues from a model trained on the same recipe (e.g. the shipped
`saved_models/mmnist/mmnist.keras`): its weights, a fresh optimizer and one-cycle schedule.
Across lent-GPU sessions, whose backups do not survive, each run so starts where the last
shipped one ended. DIR/recipe.json records the file's SHA-256 and the training behind it (its
own recipe.json or model_card.json beside it, with its `init` in turn), and
`steps_before` sums the steps of that chain, and `data_epochs_before` its data epochs: the run
trains on the data epochs after them, so a continuation sees sequences the chain has not.
A resumed run continues the data stream where its backup stopped.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kerastp  # noqa: E402, F401, I001  (before Keras: kerastp's backend and oneDNN defaults)
import keras  # noqa: E402
import numpy as np  # noqa: E402

RECIPES = {
    "mmnist": {
        "model": "stlight",
        "model_args": {
            "input_frames": 10,
            "output_frames": 10,
            "height": 64,
            "width": 64,
            "channels": 1,
            "hidden_dim": 512,
            "depth": 12,
            "patch_size": 2,
            "kernel_size_1": 3,
            "kernel_size_2": 7,
            "dilation": 3,
        },
        "data": "mnist",
        "batch_size": 32,
        "max_learning_rate": 3e-3,
        "seed": 0,
        "steps_per_epoch": 250,
        "probe_steps": 30,
    },
}


class Deadline(keras.callbacks.Callback):
    """Stops training once the wall clock (`time.time()`) passes `deadline`."""

    def __init__(self, deadline):
        super().__init__()
        self.deadline = deadline

    def on_train_batch_end(self, batch, logs=None):
        if time.time() > self.deadline:
            self.model.stop_training = True


def continue_from(model, path, recipe):
    """Loads the weights of the `.keras` file at `path` into `model` (the recipe's
    architecture) and returns the record of where they came from."""
    from kerastp.pretrained import sha256
    from kerastp.saving import load_model

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"--init {path}: no such file")
    source = load_model(path)
    theirs = source.get_config()
    for key, mine in recipe["model_args"].items():
        if theirs.get(key) != mine:
            raise SystemExit(
                f"--init {path}: its {key}={theirs.get(key)!r} differs from the recipe's "
                f"{key}={mine!r}; continue only from a model of the same architecture"
            )
    model.set_weights(source.get_weights())
    record = {"path": str(path), "sha256": sha256(path), "trained": None, "steps_before": None,
              "data_epochs_before": 0}
    for name in ("recipe.json", "model_card.json"):
        beside = path.parent / name
        if beside.is_file():
            prior = json.loads(beside.read_text())
            plan, before = prior.get("plan") or {}, prior.get("init") or {}
            training = prior.get("training") or prior  # a model card, or a pretrain record
            record["trained"] = {
                "record": str(beside),
                "plan": plan,
                "hardware": training.get("hardware"),
                "command": training.get("command"),
                "init": prior.get("init"),
            }
            if plan.get("total_steps") is not None:
                record["steps_before"] = plan["total_steps"] + (before.get("steps_before") or 0)
            record["data_epochs_before"] = (plan.get("epochs") or 0) + (
                before.get("data_epochs_before") or 0)
            break
    return record


def stream_start(backup, init):
    """The data epoch the training stream starts at: fit epoch k trains on data epoch
    `init["data_epochs_before"] + k` (the data after the chain's), and a run resumed from the
    `BackupAndRestore` folder `backup` restarts at the fit epoch its metadata records."""
    metadata = Path(backup) / "training_metadata.json"
    done = json.loads(metadata.read_text())["epoch"] if metadata.is_file() else 0
    return ((init or {}).get("data_epochs_before") or 0) + done


def hardware():
    import keras
    from _common import cpu_name

    record = {"backend": keras.backend.backend(), "keras": keras.__version__,
              "python": platform.python_version(), "cpu_count": os.cpu_count(),
              "cpu": cpu_name()}
    if keras.backend.backend() == "jax":
        import jax

        record.update(jax=jax.__version__, device=jax.devices()[0].device_kind)
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        record.update(tensorflow=tf.__version__, device=(
            tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
            if gpus else "CPU"))
    elif keras.backend.backend() == "torch":
        import torch

        record.update(torch=torch.__version__, device=(
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"))
    return record


def score(model, sequences, batch=100):
    """OpenSTL's metrics (`kerastp.evaluation.frames.ForecastEvaluator`) on `sequences`."""
    from kerastp.evaluation.frames import ForecastEvaluator

    evaluator = ForecastEvaluator()
    for start in range(0, len(sequences), batch):
        video = np.asarray(sequences[start : start + batch], np.float32) / 255.0
        evaluator.update(video[:, 10:], np.asarray(model.predict(video[:, :10], verbose=0)))
    result = evaluator.result()
    return {"mse": result["mse"], "mae": result["mae"], "ssim": result["ssim"],
            "psnr": result["psnr"], "per_frame_mse": result["mse_per_frame"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", choices=sorted(RECIPES))
    ap.add_argument("--out", required=True)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--minutes", type=float, help="wall-time budget of the whole run")
    group.add_argument("--steps", type=int, help="optimizer steps of the one-cycle schedule")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--depthwise", default="auto", help="kerastp.layers.depthwise choice")
    ap.add_argument("--mnist", default=None, help="MNIST location (mnist.npz)")
    ap.add_argument("--test-sequences", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=INT",
                    help="override a recipe entry or model argument (recorded), e.g. depth=2")
    ap.add_argument("--init", default=None, metavar="FILE.keras",
                    help="continue from this model's weights (same recipe architecture)")
    ap.add_argument("--reserve-s", type=float, default=20.0,
                    help="seconds kept for scoring and saving after training")
    args = ap.parse_args(argv)
    start = time.time()
    deadline = start + args.minutes * 60 if args.minutes else None

    from kerastp.data.pydatasets import MovingMNISTPyDataset
    from kerastp.data.standard_set import standard_test_set
    from kerastp.layers.depthwise import set_depthwise_implementation
    from kerastp.registry import MODELS
    from kerastp.saving import save_keras, write_json

    recipe = json.loads(json.dumps(RECIPES[args.name]))
    for item in args.set:
        key, _, value = item.partition("=")
        target = recipe["model_args"] if key in recipe["model_args"] else recipe
        if key not in target:
            raise SystemExit(f"--set {item}: no recipe entry or model argument {key!r}")
        target[key] = type(target[key])(value)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "recipe.json"
    previous = json.loads(record_path.read_text()) if record_path.is_file() else None
    set_depthwise_implementation(args.depthwise)
    keras.config.set_dtype_policy("mixed_bfloat16" if args.dtype == "bfloat16" else "float32")
    keras.utils.set_random_seed(recipe["seed"])
    module, cls = MODELS[recipe["model"]].split(":")
    model_class = getattr(__import__(module, fromlist=[cls]), cls)
    model = model_class(**recipe["model_args"])
    init = continue_from(model, args.init, recipe) if args.init else None
    if previous and previous.get("plan") and (previous.get("init") or {}).get("sha256") != (
        (init or {}).get("sha256")
    ):
        raise SystemExit(
            f"{record_path} was started from init {previous.get('init')!r}; resume it with the "
            "same --init, or start a new --out"
        )
    batch, per_epoch = recipe["batch_size"], recipe["steps_per_epoch"]
    peak = recipe["max_learning_rate"]

    def stream(initial_epoch, num_batches):
        return MovingMNISTPyDataset(
            recipe["data"], "train", batch_size=batch, num_sequences=num_batches * batch,
            seed=recipe["seed"], path=args.mnist, initial_epoch=initial_epoch,
            workers=args.workers, use_multiprocessing=False, max_queue_size=32,
        )

    probe = None
    if previous and previous.get("plan"):
        plan = previous["plan"]  # resume: the schedule the backup was trained under
        probe = previous.get("probe")
    else:
        probe_steps = recipe["probe_steps"] if args.minutes else 0
        if probe_steps:
            # The probe trains at the one-cycle's starting learning rate (peak / 25) and
            # times the steps after the compiling one.
            model.compile(optimizer=keras.optimizers.Adam(peak / 25.0), loss="mse", metrics=[])
            times = []

            class Clock(keras.callbacks.Callback):
                def on_train_batch_end(self, batch_index, logs=None):
                    times.append(time.perf_counter())

            t0 = time.perf_counter()
            model.fit(stream(10_000, probe_steps), epochs=1, verbose=0, callbacks=[Clock()])
            step_s = (times[-1] - times[4]) / (len(times) - 5)
            probe = {"steps": probe_steps, "first_steps_s": round(times[0] - t0, 1),
                     "step_s": round(step_s, 5), "learning_rate": peak / 25.0,
                     "data_epoch": 10_000}
            remaining = deadline - time.time() - args.reserve_s - probe["first_steps_s"]
            total = max(2, int(remaining / step_s))
        else:
            total = args.steps
            if total < 1 or total % per_epoch:
                raise SystemExit(
                    f"--steps {total}: the recipe trains in epochs of {per_epoch} steps; give a "
                    f"multiple of {per_epoch}, or set the epoch length with "
                    f"--set steps_per_epoch=N"
                )
        epochs = max(1, total // per_epoch)
        plan = {"total_steps": epochs * per_epoch, "epochs": epochs, "steps_per_epoch": per_epoch,
                "dtype": args.dtype, "depthwise": args.depthwise}
        write_json(record_path, {"name": args.name, "recipe": recipe, "plan": plan,
                                 "probe": probe, "init": init, "status": "training"})

    model.compile(learning_rate=peak, total_steps=plan["total_steps"], metrics=[])
    callbacks = [keras.callbacks.BackupAndRestore(str(out / "backup"))]
    if deadline:
        callbacks.append(Deadline(deadline - args.reserve_s))
    first_data_epoch = stream_start(out / "backup", init)  # this process's first
    fit_start = time.time()
    history = model.fit(stream(first_data_epoch, plan["steps_per_epoch"]), epochs=plan["epochs"],
                        verbose=2, callbacks=callbacks)
    fit_s = time.time() - fit_start
    epochs_done = len(history.history.get("loss", []))
    finished = not model.stop_training or epochs_done >= plan["epochs"]
    test = standard_test_set(args.test_sequences, source=recipe["data"], path=args.mnist)
    scores = score(model, test)
    save_keras(model, out / f"{args.name}.keras", include_optimizer=False)
    result = {"name": args.name, "recipe": recipe, "plan": plan, "probe": probe, "init": init,
              "status": "complete" if finished else "stopped at the deadline (resumable)",
              "epochs_this_run": epochs_done, "first_data_epoch": first_data_epoch,
              "fit_s": round(fit_s, 1),
              "wall_s": round(time.time() - start, 1),
              "loss": [round(float(v), 6) for v in history.history.get("loss", [])],
              "test_sequences": args.test_sequences, "test": scores,
              "hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": "python benchmarks/pretrain.py " + " ".join(sys.argv[1:] if argv is None
                                                                     else argv)}
    write_json(record_path, result)
    print(json.dumps({k: result[k] for k in ("status", "plan", "fit_s", "wall_s", "test")}),
          flush=True)


if __name__ == "__main__":
    main()
