"""Quality at equal budget on Moving MNIST: every model trained for the same number of steps.

Each preset is trained with `kerastp.training.train` exactly as `kerastp train` would (its
own learning rate, loss and the one-cycle schedule, stretched over the budget), on freshly
generated sequences of real MNIST digits (`../shared/data/mnist`, else procedural digits) at
batch 16, for `--steps` optimizer steps; scheduled sampling of the recurrent baselines is
rescaled to the budget (it ends at 40% of the steps, as OpenSTL's 50k of 125k). Every model is
scored on the same first `--eval-sequences` sequences of the fixed standard test set with
OpenSTL's metrics (MSE / MAE as per-frame sums, SSIM, PSNR) and MSE per lead time.

Outputs: `quality.json`, `quality.md`, `quality_mse_per_lead_time.png` (MSE vs lead time,
one line per model) and `quality_forecasts.png` (the same test sequences forecast by every
model, under the inputs and the truth).

    python benchmarks/quality.py --steps 800
    python benchmarks/quality.py --presets stlight_tiny simvp_tiny --steps 3 --eval-sequences 8
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kerastp  # noqa: E402, F401, I001  (before Keras: kerastp's backend and oneDNN defaults)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    RESULTS,
    SHARED,
    budget_overrides,
    lead_time_plot,
    machine,
    machine_line,
    presets_for,
    pyplot,
    save_figure,
    write_results,
)

from kerastp import registry, training  # noqa: E402
from kerastp.data import moving_mnist  # noqa: E402
from kerastp.data.sources import get_source  # noqa: E402
from kerastp.flops import count_macs  # noqa: E402

BATCH = 16


class StepTimer(keras.callbacks.Callback):
    """Wall time of the optimizer steps after the first (which traces the graph)."""

    def __init__(self):
        super().__init__()
        self.steps = 0
        self.seconds = 0.0
        self.first_step_seconds = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        elapsed = time.perf_counter() - self._start
        self.steps += 1
        if self.first_step_seconds is None:
            self.first_step_seconds = elapsed
        else:
            self.seconds += elapsed


def data_source(choice):
    """("mnist", path) when the shared MNIST digits are here (or asked for), else procedural."""
    shared = SHARED / "mnist" / "mnist.npz"
    if choice in ("auto", "mnist") and shared.is_file():
        return "mnist", str(shared)
    if choice == "mnist":
        return "mnist", None  # resolve_mnist_path's own search order (and its clear error)
    return "procedural", None


def train_one(preset, steps, data, mnist_path, eval_sequences, workdir, seed):
    overrides = budget_overrides(preset, steps)
    timer = StepTimer()
    start = time.perf_counter()
    result = training.train(
        preset=preset,
        data=data,
        mnist_path=mnist_path,
        run_dir=str(Path(workdir) / preset),
        epochs=1,
        steps_per_epoch=steps,
        batch_size=BATCH,
        schedule="one_cycle" if steps >= 2 else "constant",
        val_sequences=16,
        eval_sequences=eval_sequences,
        overrides=overrides,
        seed=seed,
        verbose=0,
        callbacks=[timer],
    )
    wall = time.perf_counter() - start
    model, metrics = result["model"], result["metrics"]
    row = {
        "preset": preset,
        "model": registry.get_preset(preset)["model"],
        "overrides": overrides,
        "params": registry.count_trainable_params(model),
        "gmacs": count_macs(model).macs / 1e9,
        "steps": timer.steps,
        "train_sequences": timer.steps * BATCH,
        "learning_rate": result["config"]["learning_rate"],
        "first_step_seconds": timer.first_step_seconds,
        "step_seconds": timer.seconds / max(timer.steps - 1, 1),
        "fit_seconds": result["seconds"],
        "wall_seconds": wall,
        "mse": metrics["mse"],
        "mae": metrics["mae"],
        "ssim": metrics["ssim"],
        "psnr": metrics["psnr"],
        "mse_per_frame": [float(v) for v in metrics["mse_per_frame"]],
        "eval_sequences": metrics["n_sequences"],
    }
    return model, row


def forecast_grid(examples, past, future, path, max_frames=10):
    """Rows: inputs, truth, then each model's forecast, for each example sequence."""
    plt = pyplot()
    names = list(examples)
    rows_per = 2 + len(names)
    count = past.shape[0]
    frames = min(max_frames, future.shape[1])
    figure, axes = plt.subplots(
        rows_per * count, frames, figsize=(frames * 0.9, rows_per * count * 0.95), squeeze=False
    )
    for s in range(count):
        rows = [("input", past[s, -frames:]), ("truth", future[s, :frames])]
        rows += [(name, np.clip(examples[name][s, :frames], 0, 1)) for name in names]
        for r, (label, clip) in enumerate(rows):
            for t in range(frames):
                axis = axes[s * rows_per + r, t]
                axis.imshow(clip[t, ..., 0], cmap="gray", vmin=0, vmax=1)
                axis.set_xticks([])
                axis.set_yticks([])
                if t == 0:
                    axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
                if s == 0 and r == 0:
                    axis.set_title(f"t{'+' if label != 'input' else ''}{t + 1}", fontsize=7)
    figure.suptitle("Moving MNIST test sequences: last inputs, truth, forecasts", fontsize=9)
    return save_figure(figure, path)


def markdown(payload):
    lines = [
        f"Quality at equal budget on Moving MNIST ({payload['data']} digits): "
        f"{payload['steps']} steps at batch {BATCH} each ({payload['steps'] * BATCH:,} training "
        f"sequences), scored on {payload['eval_sequences']} sequences of the fixed test set; "
        f"{machine_line(payload['machine'])}. MSE / MAE: per-frame sums (OpenSTL). "
        "Train: fit wall time including the first (tracing) step and the final validation.",
        "",
        "| preset | params | GMACs | MSE ↓ | MAE ↓ | SSIM ↑ | PSNR ↑ | MSE @ t+1 | MSE @ last "
        "| train (s) | s/step |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        lines.append(
            f"| {r['preset']} | {r['params'] / 1e3:.1f}K | {r['gmacs']:.3f} | {r['mse']:.2f} | "
            f"{r['mae']:.2f} | {r['ssim']:.4f} | {r['psnr']:.2f} | {r['mse_per_frame'][0]:.2f} | "
            f"{r['mse_per_frame'][-1]:.2f} | {r['fit_seconds']:.0f} | {r['step_seconds']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"], help="names, tiny or paper")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--eval-sequences", type=int, default=1000)
    parser.add_argument("--examples", type=int, default=2, help="sequences in the forecast PNG")
    parser.add_argument("--data", choices=("auto", "mnist", "procedural"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=str(RESULTS))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    presets = presets_for(args.presets)
    data, mnist_path = data_source(args.data)
    sequences = get_source(data, mnist_path=mnist_path).test_sequences(args.examples)
    past, future = moving_mnist.split_frames(np.asarray(sequences), 10, 10)
    payload = {
        "benchmark": "quality",
        "machine": machine(),
        "data": data,
        "steps": args.steps,
        "batch_size": BATCH,
        "eval_sequences": args.eval_sequences,
        "seed": args.seed,
        "results": [],
    }
    examples = {}
    out_dir = Path(args.out_dir)
    with tempfile.TemporaryDirectory() as workdir:
        for preset in presets:
            print(f"[{preset}] training {args.steps} steps ...", flush=True)
            model, row = train_one(
                preset, args.steps, data, mnist_path, args.eval_sequences, workdir, args.seed
            )
            examples[preset] = model.predict(past, verbose=0)
            payload["results"].append(row)
            print(
                f"[{preset}] MSE {row['mse']:.2f} SSIM {row['ssim']:.4f} "
                f"({row['fit_seconds']:.0f} s)",
                flush=True,
            )
            write_results(out_dir, "quality", payload, markdown(payload))
            keras.backend.clear_session()
    curves = {r["preset"]: r["mse_per_frame"] for r in payload["results"]}
    lead_time_plot(
        curves,
        out_dir / "quality_mse_per_lead_time.png",
        f"Moving MNIST, {args.steps} steps each: MSE per frame vs lead time",
        "MSE (per-frame sum)",
    )
    forecast_grid(examples, past, future, out_dir / "quality_forecasts.png")
    table = markdown(payload)
    write_results(out_dir, "quality", payload, table)
    print(table)
    return payload


if __name__ == "__main__":
    main()
