"""Training-step time of kerastp models under each depth-wise form, side by side.

    KERAS_BACKEND=jax python benchmarks/depthwise_forms.py [--presets P ...] [--batch 16]

`kerastp.layers.depthwise` computes a depth-wise convolution in Keras' form or as a sum of
shifted inputs, and its "auto" choice (`AUTO`) is keyed by backend, platform, dtype and
whether the kernel is dilated. This script builds each preset once per configuration (the
same seed, so the same weights), compiles each, then times `train_on_batch` on one fixed
batch with the configurations interleaved round by round, so that a shared machine's drift
falls on all of them alike. Configurations:

- ``keras``: every depth-wise convolution in Keras' form;
- ``shift_dilated``: dilated kernels shifted, undilated ones in Keras' form;
- ``shift_all``: every one shifted.

Writes `--out`/depthwise_forms_<backend>_<platform>.json (every timed step) and `.md`
(medians and the ratio to ``keras``). `benchmarks/gpu.py` does the same race on a GPU
against PyTorch; this one measures where no GPU is (JAX on CPU, which chose ``AUTO``'s CPU
entry).
"""

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kerastp  # noqa: E402, F401, I001  (before Keras: kerastp's backend defaults)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerastp import registry  # noqa: E402
from kerastp.layers import depthwise  # noqa: E402
from _common import cpu_name, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: name -> (implementation set globally, {"dilated"|"undilated": form} put into AUTO)
CONFIGS = {
    "keras": ("keras", {}),
    "shift_dilated": ("auto", {"dilated": "shift", "undilated": "keras"}),
    "shift_all": ("shift", {}),
}


@contextlib.contextmanager
def _form(name, platform_name):
    """Within the block, depth-wise convolutions traced use the configuration `name`."""
    implementation, auto = CONFIGS[name]
    saved = dict(depthwise.AUTO)
    for kind, form in auto.items():
        depthwise.AUTO[(keras.backend.backend(), platform_name, "float32", kind)] = form
    try:
        with depthwise.using_depthwise_implementation(implementation):
            yield
    finally:
        depthwise.AUTO.clear()
        depthwise.AUTO.update(saved)


def race(preset, batch, rounds, overrides, platform_name):
    """{config: {"first_s", "steps_s": [...]}} for one preset, the configurations interleaved."""
    models = {}
    for name in CONFIGS:
        keras.utils.set_random_seed(0)
        model = registry.build_model(preset, **overrides)
        model.compile(optimizer="adam", loss="mse")
        models[name] = model
    probe = models["keras"]
    rng = np.random.default_rng(0)
    frames = (probe.height, probe.width, probe.channels)
    past = rng.random((batch, probe.input_frames, *frames), dtype=np.float32)
    future = rng.random((batch, probe.output_frames, *frames), dtype=np.float32)

    def step(name):
        with _form(name, platform_name):
            started = time.perf_counter()
            models[name].train_on_batch(past, future)
            return time.perf_counter() - started

    result = {name: {"first_s": round(step(name), 2), "steps_s": []} for name in CONFIGS}
    for _ in range(rounds):
        for name in CONFIGS:
            result[name]["steps_s"].append(round(step(name), 4))
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="*", default=["stlight_tiny", "simvp_tiny", "tau_tiny"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=4, help="timed steps per configuration")
    ap.add_argument("--override", action="append", default=[], metavar="PRESET:JSON",
                    help='an extra row: a preset with config overrides, e.g. '
                         '\'stlight_tiny:{"hidden_dim": 512, "depth": 2}\'')
    ap.add_argument("--override-batch", type=int, default=8, help="batch of the --override rows")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    platform_name = depthwise._platform()
    rows = [(preset, {}, args.batch) for preset in args.presets]
    for text in args.override:
        preset, _, config = text.partition(":")
        rows.append((preset, json.loads(config), args.override_batch))
    records = []
    for preset, overrides, batch in rows:
        result = race(preset, batch, args.rounds, overrides, platform_name)
        base = float(np.median(result["keras"]["steps_s"]))
        for name, timed in result.items():
            median = float(np.median(timed["steps_s"]))
            record = {"preset": preset, "overrides": overrides, "batch": batch, "config": name,
                      "first_step_s": timed["first_s"], "steps_s": timed["steps_s"],
                      "median_ms": round(1000 * median, 1), "speedup": round(base / median, 2)}
            records.append(record)
            print(json.dumps(record), flush=True)
    stem = f"depthwise_forms_{keras.backend.backend()}_{platform_name}"
    machine = {"backend": keras.backend.backend(), "platform": platform_name,
               "keras": keras.__version__, "processor": cpu_name(),
               "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "command": "python benchmarks/depthwise_forms.py " + " ".join(
                   sys.argv[1:] if argv is None else argv)}
    lines = [f"Training step (`train_on_batch`, Adam, MSE) per depth-wise form; "
             f"{machine['backend']} on {platform_name}, Keras {machine['keras']}, "
             f"{machine['cpus']} CPUs ({machine['processor']}), {machine['date']}; "
             f"configurations interleaved, {args.rounds} timed steps each, median.", "",
             "| model | batch | form | first step s | step ms | speed-up vs keras |",
             "|---|---|---|---|---|---|"]
    for r in records:
        name = r["preset"] + (f" {json.dumps(r['overrides'])}" if r["overrides"] else "")
        lines.append(f"| {name} | {r['batch']} | {r['config']} | {r['first_step_s']} | "
                     f"{r['median_ms']} | {r['speedup']:.2f}x |")
    written = write_results(args.out, stem, {"machine": machine, "records": records},
                            "\n".join(lines) + "\n")
    print("wrote " + " and ".join(str(path) for path in written))


if __name__ == "__main__":
    main()
