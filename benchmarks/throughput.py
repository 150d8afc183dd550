"""Training throughput: samples per second of `fit` steps, per preset and execution mode.

For each preset and mode the model is built, compiled the way `kerastp train` compiles it
(one-cycle Adam, the model's default loss), and stepped with `train_on_batch` on one batch of
sequences already in memory, so the input pipeline is not measured (`pipeline.py` measures
it). The first step traces (and, with XLA, compiles) the graph: it is reported as
`first_step_seconds` and not timed. Then `--steps` steps are timed (fewer if `--max-seconds`
runs out, at least one); samples/s = batch x timed steps / their wall time.

Modes: `eager` (`run_eagerly=True`, op by op), `graph` (`tf.function`, `jit_compile=False`),
`xla` (`jit_compile=True`). On a GPU machine every mode is also run under the
`mixed_float16` and `mixed_bfloat16` policies (low-precision compute, float32 variables); on a
CPU, `--policies mixed_bfloat16` adds them. Peak GPU memory is recorded when on a GPU.

    python benchmarks/throughput.py                             # every preset, batch 16
    python benchmarks/throughput.py --presets stlight_tiny --steps 3

Writes `throughput.json` and `throughput.md` into `--out-dir` (rewritten after every preset,
so an interrupted run keeps what it measured).
"""

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kerastp  # noqa: E402, F401, I001  (before Keras: kerastp's backend and oneDNN defaults)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import (  # noqa: E402
    RESULTS,
    append_rows,
    machine,
    machines_legend,
    measured_on,
    presets_for,
    write_results,
)

from kerastp import registry  # noqa: E402
from kerastp.flops import count_macs  # noqa: E402

MODES = {
    "eager": {"run_eagerly": True, "jit_compile": False},
    "graph": {"run_eagerly": False, "jit_compile": False},
    "xla": {"run_eagerly": False, "jit_compile": True},
}


def _batch(model, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    past = rng.random((batch_size, model.input_frames, *model.frame_shape), dtype=np.float32)
    future = rng.random((batch_size, model.output_frames, *model.frame_shape), dtype=np.float32)
    return past, future


def _gpu_peak_bytes():
    if not tf.config.list_physical_devices("GPU"):
        return None
    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


def measure(preset, mode, policy, batch_size, steps, max_seconds):
    """One (preset, mode, policy) row; errors are recorded, not raised."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = registry.build_model(preset)
        model.compile(total_steps=10_000, **MODES[mode])
        past, future = _batch(model, batch_size)
        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")
        start = time.perf_counter()
        loss = model.train_on_batch(past, future, return_dict=True)["loss"]
        first = time.perf_counter() - start
        timed, used = 0, 0.0
        while timed < steps and (timed == 0 or used < max_seconds):
            start = time.perf_counter()
            loss = model.train_on_batch(past, future, return_dict=True)["loss"]
            used += time.perf_counter() - start
            timed += 1
        row = {
            "samples_per_second": batch_size * timed / used,
            "step_seconds": used / timed,
            "timed_steps": timed,
            "first_step_seconds": first,
            "loss_finite": bool(np.isfinite(loss)),
            "gpu_peak_bytes": _gpu_peak_bytes(),
            "error": None,
        }
    except Exception as error:  # noqa: BLE001 - a failing mode is a result, not a crash
        row = {"samples_per_second": None, "error": f"{type(error).__name__}: {error}"[:300]}
    finally:
        keras.mixed_precision.set_global_policy(previous)
        keras.backend.clear_session()
        gc.collect()
    return {"preset": preset, "mode": mode, "policy": policy, "batch_size": batch_size, **row}


def _fmt(row):
    if row is None:
        return "–"
    if row["samples_per_second"] is None:
        return "failed"
    return f"{row['samples_per_second']:.1f}"


def markdown(payload):
    policies = payload["policies"]
    modes = payload["modes"]
    legend, tag = machines_legend(payload["results"], payload)
    columns = [(p, m) for p in policies for m in modes]

    def label(policy, mode):
        return mode if policy == "float32" else f"{mode} {policy}"

    lines = [
        f"Training throughput, samples/s at batch {payload['batch_size']} "
        f"({legend}); one in-memory batch, the first (tracing) step "
        "not timed; `eager` = run_eagerly, `graph` = tf.function without XLA, "
        "`xla` = jit_compile=True. Compile column: first step of the xla mode, seconds.",
        "",
        "| preset | GMACs/sample | "
        + " | ".join(label(p, m) for p, m in columns)
        + " | xla first step (s) |",
        "|---|---|" + "---|" * len(columns) + "---|",
    ]
    by_key = {(r["preset"], r["mode"], r["policy"]): r for r in payload["results"]}
    for preset in payload["presets"]:
        if not any(k[0] == preset for k in by_key):
            continue
        cells = [_fmt(by_key.get((preset, m, p))) for p, m in columns]
        xla = by_key.get((preset, "xla", "float32"))
        first = (
            f"{xla['first_step_seconds']:.1f}"
            if xla and xla.get("first_step_seconds") is not None
            else "–"
        )
        gmacs = payload["gmacs"].get(preset)
        here = tag(next(r for r in payload["results"] if r["preset"] == preset))
        lines.append(f"| {preset}{here} | {gmacs:.3f} | " + " | ".join(cells) + f" | {first} |")
    if payload.get("eager_max_gmacs"):
        lines += [
            "",
            f"`eager` is measured only for presets up to {payload['eager_max_gmacs']:g} "
            "GMACs per sample, to keep the budget: on a CPU a graph-mode step of the paper-size "
            "presets already takes 11-53 s.",
        ]
    if payload.get("xla_max_gmacs"):
        lines += [
            "",
            f"`xla` is measured only for presets up to {payload['xla_max_gmacs']:g} GMACs per "
            "sample: on a CPU, XLA's compiled training step of a paper-size model asks for more "
            "memory than this machine has (stlight_extra_small: out of memory allocating "
            "10.14 GiB; stlight_small grew the process past 17 GiB).",
        ]
    for preset, reason in payload.get("not_measured", {}).items():
        lines += ["", f"Not measured: {preset} ({reason})."]
    failures = [r for r in payload["results"] if r.get("error")]
    if failures:
        lines += ["", "Failures:"]
        lines += [f"- {r['preset']} {r['mode']} {r['policy']}: {r['error']}" for r in failures]
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["all"], help="names, tiny, paper or all")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument(
        "--policies",
        nargs="+",
        default=None,
        help="dtype policies; default float32, plus mixed_float16 and mixed_bfloat16 on a GPU",
    )
    parser.add_argument(
        "--eager-max-gmacs",
        type=float,
        default=None,
        help="skip the eager mode for presets above this many GMACs per sample",
    )
    parser.add_argument(
        "--xla-max-gmacs",
        type=float,
        default=None,
        help="skip the xla mode for presets above this many GMACs per sample",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per row (at most)")
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="stop timing a row after this long"
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows of an existing throughput.json in --out-dir, measure the rest",
    )
    parser.add_argument(
        "--not-measured",
        nargs="+",
        default=[],
        metavar="PRESET=REASON",
        help="presets left out on purpose, with the reason shown under the table",
    )
    parser.add_argument("--out-dir", default=str(RESULTS))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    presets = presets_for(args.presets)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    policies = args.policies or (
        ["float32", "mixed_float16", "mixed_bfloat16"] if gpu else ["float32"]
    )
    payload = {
        "benchmark": "throughput",
        "machine": machine(),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "max_seconds": args.max_seconds,
        "eager_max_gmacs": args.eager_max_gmacs,
        "xla_max_gmacs": args.xla_max_gmacs,
        "modes": args.modes,
        "policies": policies,
        "presets": presets,
        "gmacs": {},
        "results": [],
    }
    skipped = dict(item.split("=", 1) for item in args.not_measured)
    existing = Path(args.out_dir) / "throughput.json"
    if args.append and existing.is_file():
        previous = json.loads(existing.read_text())
        payload["results"] = append_rows(previous, previous["results"], [], payload["machine"])
        payload["gmacs"] = previous["gmacs"]
        skipped = {**previous.get("not_measured", {}), **skipped}
        payload["presets"] = previous["presets"] + [
            p for p in presets if p not in previous["presets"]
        ]
    payload["not_measured"] = skipped
    done = {r["preset"] for r in payload["results"]}
    for preset in presets:
        if preset in done or preset in skipped:
            continue
        payload["gmacs"][preset] = count_macs(registry.build_model(preset)).macs / 1e9
        keras.backend.clear_session()
        for policy in policies:
            for mode in args.modes:
                gmacs = payload["gmacs"][preset]
                limit = {"eager": args.eager_max_gmacs, "xla": args.xla_max_gmacs}.get(mode)
                if limit and gmacs > limit:
                    continue
                row = measure(preset, mode, policy, args.batch_size, args.steps, args.max_seconds)
                payload["results"].append({**row, "measured_on": measured_on(payload["machine"])})
                print(
                    f"[{preset}] {mode} {policy}: {_fmt(row)} samples/s"
                    + (f" ({row['error']})" if row.get("error") else ""),
                    flush=True,
                )
        write_results(args.out_dir, "throughput", payload, markdown(payload))
    table = markdown(payload)
    write_results(args.out_dir, "throughput", payload, table)
    print(table)
    return payload


if __name__ == "__main__":
    main()
