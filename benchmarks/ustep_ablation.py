"""USTEP ablation on Moving MNIST at a fixed CPU budget per configuration.

Compares default USTEP (dt 2, DT 5), with and without each auxiliary objective, the
degenerate scales (1, 1) and (T, T), and STLight at a similar MAC count. Every configuration
trains for the same wall-clock budget (Adam, constant learning rate, batch 16, fresh sequences)
and is scored on the first `--eval-sequences` sequences of the fixed standard test set.

    python benchmarks/ustep_ablation.py --budget-seconds 150
    python benchmarks/ustep_ablation.py --budget-seconds 20 --eval-sequences 32   # smoke

Writes benchmarks/results/ustep_ablation.json and .md (or --out).
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kerastp  # noqa: E402, F401, I001  (before Keras: kerastp's backend and oneDNN defaults)
import keras  # noqa: E402

from kerastp import registry, training  # noqa: E402
from kerastp.flops import count_macs  # noqa: E402
from kerastp.saving import write_json  # noqa: E402

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

#: name -> (preset, model overrides, what it tests)
CONFIGS = {
    "ustep_default": ("ustep_tiny", {}, "dt 2, DT 5, MSE only"),
    "ustep_mask": ("ustep_tiny", {"mask_weight": 0.1}, "+ masked prediction (0.1)"),
    "ustep_contrastive": ("ustep_tiny", {"contrastive_weight": 0.05}, "+ InfoNCE (0.05)"),
    "ustep_both": (
        "ustep_tiny",
        {"mask_weight": 0.1, "contrastive_weight": 0.05},
        "+ both objectives",
    ),
    "ustep_recurrent": (
        "ustep_tiny",
        {"micro_frames": 1, "macro_frames": 1},
        "dt = DT = 1 (recurrent-like)",
    ),
    "ustep_recurrent_free": (
        "ustep_tiny",
        {"micro_frames": 10, "macro_frames": 10},
        "dt = DT = 10 (recurrent-free-like)",
    ),
    "stlight_similar_macs": (
        "stlight_tiny",
        {"hidden_dim": 128, "depth": 11},
        "STLight d=128, 11 blocks",
    ),
}


class TimeBudget(keras.callbacks.Callback):
    """Stops training once the optimizer steps have used `seconds` of wall time.

    Only time inside training batches counts, and not the first batch, which traces and
    compiles the graph (reported as `first_step_seconds`): every configuration gets the same
    compute for learning, whatever its compile time and validation cost.
    """

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.steps = 0
        self.used = 0.0
        self.first_step_seconds = None

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        elapsed = time.perf_counter() - self._batch_start
        self.steps += 1
        if self.first_step_seconds is None:
            self.first_step_seconds = elapsed
            return
        self.used += elapsed
        if self.used >= self.seconds:
            self.model.stop_training = True


def run(name, budget, data, mnist_path, eval_sequences, learning_rate, workdir):
    preset, overrides, description = CONFIGS[name]
    budget_callback = TimeBudget(budget)
    start = time.perf_counter()
    result = training.train(
        preset=preset,
        data=data,
        mnist_path=mnist_path,
        run_dir=str(Path(workdir) / name),
        epochs=1000,
        steps_per_epoch=25,
        batch_size=16,
        learning_rate=learning_rate,
        schedule="constant",
        val_sequences=16,
        eval_sequences=eval_sequences,
        overrides=overrides,
        verbose=0,
        callbacks=[budget_callback],
    )
    wall = time.perf_counter() - start
    model = result["model"]
    metrics = result["metrics"]
    return {
        "name": name,
        "description": description,
        "preset": preset,
        "overrides": overrides,
        "params": registry.count_trainable_params(model),
        "gmacs": count_macs(model).macs / 1e9,
        "train_steps": budget_callback.steps,
        "step_seconds": budget_callback.used / max(budget_callback.steps - 1, 1),
        "first_step_seconds": budget_callback.first_step_seconds,
        "train_sequences": budget_callback.steps * 16,
        "fit_seconds": result["seconds"],
        "wall_seconds": wall,
        "mse": metrics["mse"],
        "mae": metrics["mae"],
        "ssim": metrics["ssim"],
        "psnr": metrics["psnr"],
        "mse_per_frame": metrics["mse_per_frame"],
        "eval_sequences": metrics["n_sequences"],
    }


def markdown(payload):
    rows = payload["results"]
    lines = [
        f"USTEP ablation, Moving MNIST ({payload['data']} digits), "
        f"{payload['budget_seconds']:.0f} s of training per configuration on "
        f"{payload['machine']}, Adam lr "
        f"{payload['learning_rate']}, batch 16; scored on {payload['eval_sequences']} sequences "
        "of the fixed test set (OpenSTL metrics: MSE/MAE per-frame sums).",
        "",
        "| config | what | params | GMACs | steps | MSE | MAE | SSIM | PSNR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['description']} | {r['params'] / 1e3:.1f}K | {r['gmacs']:.3f} | "
            f"{r['train_steps']} | {r['mse']:.2f} | {r['mae']:.2f} | {r['ssim']:.4f} | "
            f"{r['psnr']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-seconds", type=float, default=150.0)
    parser.add_argument("--eval-sequences", type=int, default=500)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--data", choices=("auto", "mnist", "procedural"), default="auto")
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ustep_ablation"))
    args = parser.parse_args(argv)

    data, mnist_path = args.data, None
    if data in ("auto", "mnist"):
        if (SHARED_MNIST / "mnist.npz").is_file():
            data, mnist_path = "mnist", str(SHARED_MNIST / "mnist.npz")
        elif data == "mnist":
            mnist_path = None  # resolve_mnist_path's own search order
        else:
            data = "procedural"
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.configs:
            print(f"[{name}] training for {args.budget_seconds:.0f} s ...", flush=True)
            row = run(
                name,
                args.budget_seconds,
                data,
                mnist_path,
                args.eval_sequences,
                args.learning_rate,
                workdir,
            )
            print(
                f"[{name}] {row['train_steps']} steps, MSE {row['mse']:.2f}, "
                f"SSIM {row['ssim']:.4f}",
                flush=True,
            )
            results.append(row)
    payload = {
        "benchmark": "ustep_ablation",
        "data": data,
        "budget_seconds": args.budget_seconds,
        "eval_sequences": args.eval_sequences,
        "learning_rate": args.learning_rate,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "results": results,
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), payload)
    table = out.with_suffix(".md")
    tmp = table.with_name(f".{table.name}.tmp")
    tmp.write_text(markdown(payload))
    os.replace(tmp, table)
    print(markdown(payload))


if __name__ == "__main__":
    main()
