"""Races kerastp's STLight (Keras on JAX) against the PyTorch reference STLight, side by side.

Run on a GPU machine (or on CPU with JAX, at small sizes, as the test does):

    KERAS_BACKEND=jax python benchmarks/gpu.py --out DIR --torch-script PATH/torch_stlight.py

Phases, each appending JSON lines to DIR/gpu.jsonl as it goes (so a cut-off run still reports):

1. `torch`: the reference's training samples/s (`torch_stlight.py speed`), in a subprocess
   that ends before JAX starts.
2. `micro`: one depth-wise convolution, forward and backward, in each of kerastp's
   implementations (`kerastp.layers.depthwise`) at STLight's shapes (3x3, then 7x7 dilated 3,
   on (B, H/2, W/2, d)), per dtype; the fastest per dtype is chosen for phase 3.
3. `kerastp`: STLight trained with `model.fit` (Adam, MSE), samples/s after the compiling
   steps, with the chosen implementation and, as the "before" figure, Keras' own.

DIR/race.json holds every record and DIR/race.md the table with kerastp / PyTorch ratios.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class Log:
    """Appends JSON records to a file and prints them as they come."""

    def __init__(self, path):
        self.path = Path(path)
        self.records = []

    def __call__(self, record):
        self.records.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def torch_speed(script, d, batches, steps, timeout):
    """Runs the reference's speed phase in a subprocess; returns its JSON records."""
    if not script or not Path(script).is_file():
        return [{"phase": "torch", "skipped": f"no reference script at {script!r}"}]
    try:
        import torch  # noqa: F401
    except ImportError:
        return [{"phase": "torch", "skipped": "PyTorch is not installed"}]
    command = [sys.executable, str(script), "speed", "--d", str(d), "--batches",
               ",".join(map(str, batches)), "--bf16", "--steps", str(steps)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"phase": "torch", "skipped": f"timed out after {timeout} s"}]
    records = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            record["phase"] = "torch"
            record["dtype"] = "bfloat16" if record.pop("bf16") else "float32"
            records.append(record)
    if done.returncode:
        records.append({"phase": "torch", "error": done.stderr[-2000:]})
    return records


def _time(fn, args, reps):
    import jax

    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(reps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / reps


def micro(batch, size, d, dtype, implementations, reps):
    """Forward + backward of one depth-wise convolution per implementation and kernel."""
    import jax
    from jax import numpy as jnp

    from kerastp.layers import depthwise

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, size, size, d)), dtype)
    records = []
    for kernel, dilation in ((3, 1), (7, 3)):
        w = jnp.asarray(rng.normal(size=(kernel, kernel, d, 1)) * 0.1, dtype)
        for name in implementations:

            def loss(x, w, dilation=dilation, name=name):
                out = depthwise.depthwise_conv(x, w, (dilation, dilation), "same", name)
                return jnp.sum(out.astype(jnp.float32) ** 2)

            step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
            start = time.perf_counter()
            try:
                jax.block_until_ready(step(x, w))
                compile_s = time.perf_counter() - start
                seconds = _time(step, (x, w), reps)
            except Exception as error:  # an implementation XLA cannot compile here
                records.append({"phase": "micro", "impl": name, "kernel": kernel,
                                "dilation": dilation, "dtype": dtype, "error": str(error)[:300]})
                continue
            records.append({"phase": "micro", "impl": name, "kernel": kernel,
                            "dilation": dilation, "dtype": dtype, "batch": batch,
                            "shape": [batch, size, size, d], "ms": round(seconds * 1e3, 3),
                            "compile_s": round(compile_s, 2)})
    return records


def fastest(records, dtype):
    """The implementation with the least total micro time (both kernels) for `dtype`."""
    totals = {}
    for r in records:
        if r.get("phase") == "micro" and r["dtype"] == dtype and "ms" in r:
            totals.setdefault(r["impl"], []).append(r["ms"])
    complete = {k: sum(v) for k, v in totals.items() if len(v) == 2}
    return min(complete, key=complete.get) if complete else "keras"


def kerastp_speed(d, depth, batch, dtype, implementation, steps, size=64):
    """Training samples/s of STLight under `model.fit` on the current Keras backend."""
    import keras

    from kerastp.layers import depthwise
    from kerastp.models.stlight import STLight

    keras.backend.clear_session()
    depthwise.set_depthwise_implementation(implementation)
    keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bfloat16" else "float32")
    try:
        model = STLight(height=size, width=size, hidden_dim=d, depth=depth)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=[])
        rng = np.random.default_rng(0)
        x = rng.random((batch * 4, 10, size, size, 1), dtype=np.float32)
        y = rng.random((batch * 4, 10, size, size, 1), dtype=np.float32)
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=3, verbose=0)
        compile_s = time.perf_counter() - start
        epochs = max(1, steps // 4)
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=False)
        seconds = (time.perf_counter() - start) / (epochs * 4)
    finally:
        keras.config.set_dtype_policy("float32")
        depthwise.set_depthwise_implementation(None)
    return {"phase": "kerastp", "impl": implementation, "d": d, "depth": depth,
            "batch": batch, "dtype": dtype, "params": int(model.count_params()),
            "backend": keras.backend.backend(), "keras": keras.__version__,
            "train_samples_per_s": round(batch / seconds, 2), "first_steps_s": round(compile_s, 1),
            "timed_steps": epochs * 4}


def environment():
    import keras

    record = {"phase": "env", "python": platform.python_version(),
              "keras": keras.__version__, "backend": keras.backend.backend(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if keras.backend.backend() == "jax":
        import jax

        record.update(jax=jax.__version__, devices=[str(x) for x in jax.devices()],
                      device_kind=jax.devices()[0].device_kind)
    return record


def table(records):
    """Markdown: kerastp vs PyTorch train samples/s per (batch, dtype)."""
    torch = {(r["batch"], r["dtype"]): r for r in records
             if r.get("phase") == "torch" and "train_samples_per_s" in r}
    rows = ["| batch | dtype | implementation | PyTorch samples/s | kerastp samples/s | ratio |",
            "|---|---|---|---|---|---|"]
    for r in records:
        if r.get("phase") != "kerastp":
            continue
        ref = torch.get((r["batch"], r["dtype"]))
        ratio = f"{r['train_samples_per_s'] / ref['train_samples_per_s']:.2f}" if ref else "-"
        rows.append(f"| {r['batch']} | {r['dtype']} | {r['impl']} | "
                    f"{ref['train_samples_per_s'] if ref else '-'} | "
                    f"{r['train_samples_per_s']} | {ratio} |")
    micro_rows = ["", "| depth-wise conv (fwd+bwd) | dtype | implementation | ms |",
                  "|---|---|---|---|"]
    for r in records:
        if r.get("phase") == "micro" and "ms" in r:
            micro_rows.append(f"| {r['kernel']}x{r['kernel']} dilation {r['dilation']}, "
                              f"{tuple(r['shape'])} | {r['dtype']} | {r['impl']} | {r['ms']} |")
    return "\n".join(rows + micro_rows) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(RESULTS / "gpu"))
    ap.add_argument("--torch-script", default=None)
    ap.add_argument("--d", type=int, default=800)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batches", default="16,64")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--micro-reps", type=int, default=20)
    ap.add_argument("--implementations", default="keras,shift")
    ap.add_argument("--baseline-batches", default="16",
                    help="batches also measured with Keras' own depth-wise convolution")
    ap.add_argument("--torch-timeout", type=float, default=300)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu.jsonl")
    batches = [int(b) for b in args.batches.split(",")]
    dtypes = args.dtypes.split(",")
    implementations = args.implementations.split(",")
    baseline = {int(b) for b in args.baseline_batches.split(",") if b}

    for record in torch_speed(args.torch_script, args.d, batches, args.steps,
                              args.torch_timeout):
        log(record)
    log(environment())
    for dtype in dtypes:
        for record in micro(batches[0], args.size // 2, args.d, dtype, implementations,
                            args.micro_reps):
            log(record)
    for dtype in dtypes:
        best = fastest(log.records, dtype)
        log({"phase": "choice", "dtype": dtype, "impl": best})
        for batch in batches:
            runs = [best] + (["keras"] if batch in baseline and best != "keras" else [])
            for implementation in runs:
                try:
                    log(kerastp_speed(args.d, args.depth, batch, dtype, implementation,
                                      args.steps, args.size))
                except Exception as error:
                    log({"phase": "kerastp", "impl": implementation, "batch": batch,
                         "dtype": dtype, "error": str(error)[:500]})
    (out / "race.json").write_text(json.dumps(log.records, indent=1) + "\n")
    (out / "race.md").write_text(table(log.records))
    print(table(log.records))


if __name__ == "__main__":
    main()
