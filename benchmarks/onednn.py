"""TensorFlow's oneDNN CPU kernels off and on: kerastp's training and inference steps side by side.

TensorFlow turns its oneDNN CPU kernels on by itself only on CPUs with AVX-512 VNNI / BF16,
AVX-VNNI or AMX; elsewhere (AVX2 machines such as many AMD EPYC cloud VMs) it runs its Eigen
kernels unless `TF_ENABLE_ONEDNN_OPTS=1`. kerastp sets that variable when it is imported and the
user has not (`kerastp/__init__.py`). This script measures what the choice is worth here.

For each preset (`--presets`, default the tiny STLight, SimVP and TAU and `motioncast_radar`) at
batch `--batch`, one child process per setting (`TF_ENABLE_ONEDNN_OPTS=0` and `=1`; TensorFlow
reads it once, at import) builds the preset, compiles it as training does, times its first
`train_on_batch` (tracing and compiling included), then `train_on_batch` on the same random
frames of the preset's shape for `--seconds` (at least 3 steps), then `predict` at the same
batch (3 calls after one untimed). `--repeats` rounds alternate the order of the two settings;
the table gives medians and the ratio of the step times, off over on (above 1: oneDNN faster).
Where this CPU has the features TensorFlow turns oneDNN on for, both settings run oneDNN and
the ratios are 1 up to noise; each child records what TensorFlow itself says it runs
(`IsMklEnabled`), and the table says which case this machine is.

    python benchmarks/onednn.py      # the recorded run: 13 min on a 2-core AVX2 AMD EPYC
    python benchmarks/onednn.py --presets stlight_tiny --seconds 10 --repeats 1

Writes `onednn.json` and `onednn.md` into `--out-dir` (default `benchmarks/results/cpu`).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

ENV_VAR = "TF_ENABLE_ONEDNN_OPTS"
SETTINGS = ("0", "1")
#: /proc/cpuinfo flags for which TensorFlow turns oneDNN on by default (TensorFlow's
#: `IsMklEnabled` CPU check: AVX-512 VNNI, AVX-512 BF16, AVX-VNNI, AMX).
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile")
DEFAULT_PRESETS = ("stlight_tiny", "simvp_tiny", "tau_tiny", "motioncast_radar")


def cpu_flags():
    """The CPU feature flags in /proc/cpuinfo (empty where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def onednn_enabled():
    """Whether this process's TensorFlow runs its oneDNN kernels (its own runtime check)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def child(preset, batch, seconds):
    """Times one preset in this process (the parent chose `TF_ENABLE_ONEDNN_OPTS`)."""
    import numpy as np

    from kerastp import registry

    model = registry.build_model(preset)
    past_shape = (batch, *model.input_signature_shape[1:])
    future_shape = (batch, model.output_frames, *past_shape[2:])
    rng = np.random.default_rng(0)
    past = rng.random(past_shape, dtype=np.float32)
    future = rng.random(future_shape, dtype=np.float32)
    config = registry.get_preset(preset)["training"]
    model.compile(learning_rate=config["max_learning_rate"])
    start = time.perf_counter()
    model.train_on_batch(past, future)
    first = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        model.train_on_batch(past, future)
        steps += 1
    train = (time.perf_counter() - start) / steps
    model.predict(past, batch_size=batch, verbose=0)
    start = time.perf_counter()
    for _ in range(3):
        model.predict(past, batch_size=batch, verbose=0)
    predict = (time.perf_counter() - start) / 3
    return {
        "preset": preset,
        "setting": os.environ.get(ENV_VAR),
        "onednn": onednn_enabled(),
        "first_step_s": first,
        "train_ms": 1000 * train,
        "timed_steps": steps,
        "predict_ms": 1000 * predict,
    }


def run_child(preset, setting, batch, seconds):
    env = {**os.environ, ENV_VAR: setting}
    command = [sys.executable, __file__, "--child", preset, "--batch", str(batch),
               "--seconds", str(seconds)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{preset} with {ENV_VAR}={setting} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(payload):
    from _common import machine_line

    default_on = payload["onednn_by_default"]
    lines = [
        f"TensorFlow's oneDNN CPU kernels off (`{ENV_VAR}=0`, Eigen) and on (`=1`, what "
        f"kerastp sets): {machine_line(payload['machine'])}, {payload['date']}; batch "
        f"{payload['batch']}, medians of {payload['repeats']} alternating rounds of one child "
        f"process per setting. "
        + (
            "This CPU has the features TensorFlow turns oneDNN on for by itself, so both "
            "settings run oneDNN."
            if default_on
            else "This CPU has none of the features TensorFlow turns oneDNN on for by itself "
            f"({', '.join(ONEDNN_DEFAULT_FLAGS)}), so without kerastp's setting it runs Eigen."
        ),
        "",
        "| preset | train ms/step, off | on | off / on | predict ms, off | on | off / on "
        "| first step s, off | on |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in payload["results"]:
        off, on = row["0"], row["1"]
        lines.append(
            f"| {row['preset']} | {off['train_ms']:.0f} | {on['train_ms']:.0f} | "
            f"**{off['train_ms'] / on['train_ms']:.2f}x** | {off['predict_ms']:.0f} | "
            f"{on['predict_ms']:.0f} | {off['predict_ms'] / on['predict_ms']:.2f}x | "
            f"{off['first_step_s']:.1f} | {on['first_step_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.seconds)))
        return 0
    from _common import RESULTS, machine, write_results

    from kerastp import registry

    flags = cpu_flags()
    results = []
    for preset in args.presets:
        registry.get_preset(preset)  # an unknown name fails here, naming the presets
        runs = {setting: [] for setting in SETTINGS}
        for round_ in range(args.repeats):
            order = SETTINGS if round_ % 2 == 0 else SETTINGS[::-1]
            for setting in order:
                runs[setting].append(run_child(preset, setting, args.batch, args.seconds))
                last = runs[setting][-1]
                print(f"{preset} {ENV_VAR}={setting}: train {last['train_ms']:.0f} ms/step, "
                      f"predict {last['predict_ms']:.0f} ms", flush=True)  # fmt: skip
        if not all(m["onednn"] for m in runs["1"]):
            raise RuntimeError(f"TensorFlow did not run oneDNN with {ENV_VAR}=1 for {preset}")
        row = {"preset": preset, "runs": runs}
        for setting, measured in runs.items():
            row[setting] = {
                key: statistics.median(m[key] for m in measured)
                for key in ("train_ms", "predict_ms", "first_step_s")
            }
        results.append(row)
    payload = {
        "benchmark": "onednn",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        # TensorFlow's own answer in the children: oneDNN ran even with the variable at 0.
        "onednn_by_default": any(m["onednn"] for r in results for m in r["runs"]["0"]),
        "cpu_flags": sorted(flags & {"avx2", "avx512f", *ONEDNN_DEFAULT_FLAGS}),
        "batch": args.batch,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "results": results,
    }
    text = markdown(payload)
    write_results(args.out_dir or RESULTS / "cpu", "onednn", payload, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
