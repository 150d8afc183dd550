"""Races kerastp's STLight (Keras on JAX) against the PyTorch reference STLight, side by side.

Run on a GPU machine (or on CPU with JAX, at small sizes, as the test does):

    KERAS_BACKEND=jax python benchmarks/gpu.py --out DIR --torch-script PATH/torch_stlight.py \\
        [--quality-data DIR --quality-seconds 60]

Phases, in order of importance, each appending JSON lines to DIR/gpu.jsonl as it goes (a
run cut off by its time limit still reports what it measured):

1. `torch`: the reference's training samples/s per preset, batch and dtype (its own model and
   train step, imported from `--torch-script`), with its first step's time and peak GPU
   memory, in a subprocess that ends before JAX starts.
2. `micro`: one depth-wise convolution, forward and backward, in each of kerastp's
   implementations (`kerastp.layers.depthwise`) at STLight-XS's shapes, per kernel and dtype.
3. `kerastp`: each preset trained with `model.fit` (Adam, MSE) under kerastp's default
   ("auto") depth-wise form, one subprocess per cell (so its first-step compile time and peak
   GPU memory are its own): samples/s after the compiling steps.
4. `quality`: both sides train STLight-XS for the same seconds on the same sequences in the
   same order (`mm_train.npy`, batch 16, Adam + one-cycle 3e-3, float32) and score OpenSTL's
   MSE on `mm_test.npy` (written by ../shared/gpu/mm_data.py).
5. `baseline`: the same cells with Keras' own depth-wise form (the "before" figures), and
   `--others` (SimVP-gSTA, TAU) in both forms, so a change of default is measured against
   what it replaces, in the same run.

DIR/race.json holds every record and DIR/race.md the tables with kerastp / PyTorch ratios.
"""

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = ("torch", "micro", "kerastp", "quality", "baseline")
SHORT = {"stlight_extra_small": "XS", "stlight_small": "S", "stlight_medium": "M",
         "stlight_large": "L", "simvp_mmnist": "SimVP-gSTA", "tau_mmnist": "TAU"}


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


def _stlight_size(preset, overrides):
    from kerastp import registry

    config = {**registry.get_preset(preset)["config"], **overrides}
    return config["hidden_dim"], config["depth"]


def _subprocess(args, timeout):
    """Runs this script with `args`; returns the JSON records it printed (or one error)."""
    command = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"error": f"timed out after {timeout} s", "args": args}]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode:
        records.append({"error": done.stderr[-1500:], "args": args})
    return records


# ---------------------------------------------------------------- PyTorch side (subprocess)


def torch_cells(script, cells, steps, size=64):
    """The reference's train step timed per (d, depth, batch, dtype) cell: prints JSON."""
    import torch

    spec = importlib.util.spec_from_file_location("torch_stlight", script)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    torch.backends.cudnn.benchmark = True
    dev = reference.device()
    for preset, d, depth, batch, dtype in cells:
        bf16 = dtype == "bfloat16"
        if dev == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        model = reference.STLight(d=d, depth=depth).to(dev)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        x = torch.rand(batch, 10, 1, size, size, device=dev)
        y = torch.rand(batch, 10, 1, size, size, device=dev)
        start = time.perf_counter()
        reference.train_step(model, opt, x, y, bf16)
        reference.sync()
        first = time.perf_counter() - start
        for _ in range(2):
            reference.train_step(model, opt, x, y, bf16)
        reference.sync()
        start = time.perf_counter()
        for _ in range(steps):
            reference.train_step(model, opt, x, y, bf16)
        reference.sync()
        seconds = (time.perf_counter() - start) / steps
        peak = torch.cuda.max_memory_allocated() if dev == "cuda" else None
        print(json.dumps({
            "phase": "torch", "preset": preset, "d": d, "depth": depth, "batch": batch,
            "dtype": dtype, "params": sum(p.numel() for p in model.parameters()),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
            "train_samples_per_s": round(batch / seconds, 2), "first_step_s": round(first, 2),
            "peak_gib": round(peak / 2**30, 2) if peak is not None else None,
            "timed_steps": steps,
        }), flush=True)
        del model, opt, x, y


def torch_phase(script, cells, steps, size, timeout):
    if not script or not Path(script).is_file():
        return [{"phase": "torch", "skipped": f"no reference script at {script!r}"}]
    if importlib.util.find_spec("torch") is None:
        return [{"phase": "torch", "skipped": "PyTorch is not installed"}]
    records = _subprocess(["_torch", "--torch-script", str(script), "--steps", str(steps),
                           "--size", str(size), "--cells", json.dumps(cells)], timeout)
    return [{"phase": "torch", **r} for r in records]


# ---------------------------------------------------------------- kerastp side


def _time(fn, args, reps):
    import jax

    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(reps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / reps


def micro(batch, size, d, dtype, kernels, implementations, reps):
    """Forward + backward of one depth-wise convolution per implementation and kernel."""
    import jax
    from jax import numpy as jnp

    from kerastp.layers import depthwise

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, size, size, d)), dtype)
    records = []
    for kernel, dilation in kernels:
        # The layer keeps its kernel in float32 (a variable) and casts it per form.
        w = jnp.asarray(rng.normal(size=(kernel, kernel, d, 1)) * 0.1, "float32")
        for name in implementations:

            def loss(x, w, dilation=dilation, name=name):
                w = w if name == "shift" else w.astype(x.dtype)
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


def _peak_gib():
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return round(peak / 2**30, 2) if peak is not None else None


def _build(preset, dtype, size, overrides):
    import keras

    from kerastp import registry

    keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bfloat16" else "float32")
    model = registry.build_model(preset, height=size, width=size, **overrides)
    return model


def kerastp_cell(preset, batch, dtype, implementation, steps, size, overrides):
    """Training samples/s of a preset under `model.fit` on the current Keras backend."""
    import keras

    from kerastp.layers import depthwise

    depthwise.set_depthwise_implementation(implementation)
    model = _build(preset, dtype, size, overrides)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=[])
    rng = np.random.default_rng(0)
    frames = (size, size, model.frame_shape[-1])
    x = rng.random((batch * 4, model.input_frames, *frames), dtype=np.float32)
    y = rng.random((batch * 4, model.output_frames, *frames), dtype=np.float32)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=3, verbose=0)
    compile_s = time.perf_counter() - start
    epochs = max(1, steps // 4)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=False)
    seconds = (time.perf_counter() - start) / (epochs * 4)
    return {"phase": "kerastp", "preset": preset, "impl": implementation, "batch": batch,
            "dtype": dtype, "params": int(model.count_params()),
            "backend": keras.backend.backend(), "keras": keras.__version__,
            "train_samples_per_s": round(batch / seconds, 2),
            "first_steps_s": round(compile_s, 1), "peak_gib": _peak_gib(),
            "timed_steps": epochs * 4}


def kerastp_quality(data, seconds, steps_per_s, preset, size, overrides):
    """STLight trained as the reference's `quality` phase does, scored the same way."""
    import keras

    from kerastp.optimizers import one_cycle_adam

    train = np.load(f"{data}/mm_train.npy", mmap_mode="r")
    test = np.load(f"{data}/mm_test.npy")
    total = max(10, int(steps_per_s * seconds))
    keras.utils.set_random_seed(0)
    model = _build(preset, "float32", size, overrides)
    model.compile(optimizer=one_cycle_adam(3e-3, total), loss="mse", metrics=[])
    rng = np.random.default_rng(0)

    def batches():
        while True:
            video = train[np.sort(rng.choice(len(train), 16, replace=False))]
            video = video.astype(np.float32) / 255.0
            yield video[:, :10], video[:, 10:]

    marks = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                marks["first"] = time.perf_counter()

    start = time.perf_counter()
    model.fit(batches(), steps_per_epoch=total, epochs=1, verbose=0, callbacks=[Clock()])
    end = time.perf_counter()
    forecast = model.predict(test[:, :10].astype(np.float32) / 255.0, batch_size=100,
                             verbose=0)
    truth = test[:, 10:].astype(np.float32) / 255.0
    mse = float(((np.clip(forecast, 0, 1) - truth) ** 2).sum(axis=(2, 3, 4)).mean())
    return {"phase": "quality", "impl": "kerastp", "preset": preset, "steps": total,
            "train_s": round(end - start, 1),
            "train_s_after_first_step": round(end - marks.get("first", start), 1),
            "first_step_s": round(marks.get("first", start) - start, 1),
            "test_sequences": len(test), "mse": round(mse, 2)}


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


# ---------------------------------------------------------------- report


def _gib(value):
    return "-" if value is None else f"{value:.2f}"


def table(records):
    """Markdown: kerastp vs PyTorch per (preset, batch, dtype), then the other phases."""
    torch = {(r["preset"], r["batch"], r["dtype"]): r for r in records
             if r.get("phase") == "torch" and "train_samples_per_s" in r}
    rows = ["| preset | batch | dtype | kerastp form | PyTorch samples/s | kerastp samples/s "
            "| ratio | first step s (PyTorch / kerastp) | peak GiB (PyTorch / kerastp) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r.get("phase") not in ("kerastp", "baseline") or "train_samples_per_s" not in r:
            continue
        ref = torch.get((r["preset"], r["batch"], r["dtype"]))
        ratio = f"{r['train_samples_per_s'] / ref['train_samples_per_s']:.2f}" if ref else "-"
        rows.append(
            f"| {SHORT.get(r['preset'], r['preset'])} | {r['batch']} | {r['dtype']} | "
            f"{r['impl']} | {ref['train_samples_per_s'] if ref else '-'} | "
            f"{r['train_samples_per_s']} | {ratio} | "
            f"{ref['first_step_s'] if ref else '-'} / {r['first_steps_s']} | "
            f"{_gib(ref['peak_gib']) if ref else '-'} / {_gib(r['peak_gib'])} |")
    quality = [r for r in records if r.get("phase") == "quality" and "mse" in r]
    if quality:
        rows += ["", "| equal-time quality (STLight-XS, batch 16, float32) | steps | "
                 "train s | test sequences | MSE |", "|---|---|---|---|---|"]
        for r in quality:
            rows.append(f"| {r['impl']} | {r['steps']} | {r['train_s']} | "
                        f"{r['test_sequences']} | {r['mse']} |")
    rows += ["", "| depth-wise conv (fwd+bwd) | dtype | implementation | ms | compile s |",
             "|---|---|---|---|---|"]
    for r in records:
        if r.get("phase") == "micro" and "ms" in r:
            rows.append(f"| {r['kernel']}x{r['kernel']} dilation {r['dilation']}, "
                        f"{tuple(r['shape'])} | {r['dtype']} | {r['impl']} | {r['ms']} | "
                        f"{r['compile_s']} |")
    errors = [r for r in records if "error" in r or "skipped" in r]
    if errors:
        rows += ["", "Not measured:"]
        rows += [f"- {r.get('phase')}: {str(r.get('error') or r.get('skipped'))[:200]}"
                 for r in errors]
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------- main


def _cells(presets, batches, dtypes):
    # Cheapest first within a preset, so a cut-off run still has whole presets.
    return [(p, b, t) for p in presets for b in batches for t in dtypes]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="?", default="race",
                    choices=["race", "report", "_torch", "_cell", "_quality"],
                    help="race (default), or report: rebuild race.json/md from --merge files")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help="the phases to run (a later call can finish a cut-off race)")
    ap.add_argument("--merge", nargs="*", default=[],
                    help="gpu.jsonl files of earlier calls whose records join the report")
    ap.add_argument("--out", default=str(RESULTS / "gpu"))
    ap.add_argument("--torch-script", default=None)
    ap.add_argument("--presets", default="stlight_extra_small,stlight_large")
    ap.add_argument("--others", default="simvp_mmnist,tau_mmnist",
                    help="presets measured in both depth-wise forms at the first batch")
    ap.add_argument("--override", default="{}",
                    help="JSON config overrides for every preset (toy sizes in tests)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batches", default="16,64")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--micro-reps", type=int, default=20)
    ap.add_argument("--micro-kernels", default="3:1,5:1,7:3")
    ap.add_argument("--implementations", default="keras,shift")
    ap.add_argument("--baseline-batches", default="16",
                    help="batches of the first preset also measured with Keras' own form")
    ap.add_argument("--quality-data", default=None)
    ap.add_argument("--quality-seconds", type=float, default=60)
    ap.add_argument("--cell-timeout", type=float, default=400)
    # Subprocess arguments.
    ap.add_argument("--cells", default="[]")
    ap.add_argument("--preset")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--dtype")
    ap.add_argument("--impl", default="auto")
    ap.add_argument("--steps-per-s", type=float)
    args = ap.parse_args(argv)
    overrides = json.loads(args.override)

    if args.what == "_torch":
        return torch_cells(args.torch_script, json.loads(args.cells), args.steps, args.size)
    if args.what == "_cell":
        try:
            record = kerastp_cell(args.preset, args.batch, args.dtype, args.impl, args.steps,
                                  args.size, overrides)
        except Exception as error:  # an out-of-memory cell reports and the race goes on
            record = {"phase": "kerastp", "preset": args.preset, "batch": args.batch,
                      "dtype": args.dtype, "impl": args.impl, "error": str(error)[:800]}
        print(json.dumps(record), flush=True)
        return None
    if args.what == "_quality":
        print(json.dumps(kerastp_quality(args.quality_data, args.quality_seconds,
                                         args.steps_per_s, args.preset, args.size,
                                         overrides)), flush=True)
        return None

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu.jsonl")
    for path in args.merge:
        log.records += [json.loads(line) for line in Path(path).read_text().splitlines()
                        if line.startswith("{")]
    phases = set(args.phases.split(","))
    if args.what == "report":
        phases = set()
    presets = [p for p in args.presets.split(",") if p]
    batches = [int(b) for b in args.batches.split(",")]
    dtypes = args.dtypes.split(",")
    def cell(preset, batch, dtype, impl, phase):
        # The overrides (toy sizes) are the race presets'; the others keep their configs.
        override = args.override if preset in presets else "{}"
        for record in _subprocess(["_cell", "--preset", preset, "--batch", str(batch),
                                   "--dtype", dtype, "--impl", impl, "--size", str(args.size),
                                   "--override", override, "--steps", str(args.steps)],
                                  args.cell_timeout):
            log({**record, "phase": phase, "preset": preset, "batch": batch,
                 "dtype": dtype, "impl": impl})

    def report():
        (out / "race.json").write_text(json.dumps(log.records, indent=1) + "\n")
        (out / "race.md").write_text(table(log.records))

    try:
        sizes = {p: _stlight_size(p, overrides) for p in presets}
        torch_cells_ = [[p, *sizes[p], b, t] for p, b, t in _cells(presets, batches, dtypes)]
        if "torch" in phases:
            for record in torch_phase(args.torch_script, torch_cells_, args.steps, args.size,
                                      args.cell_timeout):
                log(record)
        if phases:
            log(environment())
        kernels = [tuple(int(v) for v in k.split(":")) for k in args.micro_kernels.split(",")
                   if k]
        if "micro" in phases:
            for dtype in dtypes:
                for record in micro(batches[0], args.size // 2, sizes[presets[0]][0], dtype,
                                    kernels, args.implementations.split(","),
                                    args.micro_reps):
                    log(record)
            report()
        if "kerastp" in phases:
            for preset, batch, dtype in _cells(presets, batches, dtypes):
                cell(preset, batch, dtype, "auto", "kerastp")
                report()
        if "quality" in phases and args.quality_data:
            log({"phase": "quality", **_torch_quality(args)})
            rate = [r for r in log.records if r.get("phase") == "kerastp"
                    and r.get("batch") == 16 and r.get("dtype") == "float32"
                    and r.get("preset") == presets[0] and "train_samples_per_s" in r]
            # kerastp's schedule is sized by its own measured step rate, as the reference's.
            records = [{"impl": "kerastp", "skipped": "no batch-16 float32 rate measured for "
                        f"{presets[0]} (run or --merge the kerastp phase first)"}]
            if rate:
                records = _subprocess(
                    ["_quality", "--quality-data", args.quality_data, "--quality-seconds",
                     str(args.quality_seconds), "--steps-per-s",
                     str(rate[0]["train_samples_per_s"] / 16), "--preset", presets[0],
                     "--size", str(args.size), "--override", args.override],
                    args.cell_timeout)
            for record in records:
                log({"phase": "quality", **record})
            report()
        if "baseline" in phases:
            for preset in [p for p in args.others.split(",") if p]:
                for impl in ("auto", "keras"):
                    cell(preset, batches[0], dtypes[0], impl, "baseline")
                    report()
            for batch in [int(b) for b in args.baseline_batches.split(",") if b]:
                for dtype in dtypes:
                    cell(presets[0], batch, dtype, "keras", "baseline")
                    report()
    finally:
        report()
    print(table(log.records))
    return None


def _torch_quality(args):
    """The reference's own `quality` command on the same data and seconds."""
    if not args.torch_script or importlib.util.find_spec("torch") is None:
        return {"impl": "torch-reference", "skipped": "no PyTorch or reference script"}
    command = [sys.executable, args.torch_script, "quality", "--data", args.quality_data,
               "--seconds", str(args.quality_seconds)]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=args.cell_timeout)
    except subprocess.TimeoutExpired:
        return {"impl": "torch-reference", "error": "timed out"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"impl": "torch-reference", "error": done.stderr[-1000:]}
    return json.loads(lines[-1])


if __name__ == "__main__":
    main()
