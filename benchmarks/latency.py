"""Forecast latency at batch 1 and artifact size, per preset and runtime.

For each preset: Keras eager, Keras with XLA (`jit_compile=True`), the SavedModel signature,
TFLite fp32 / fp16 / dynamic-range / full int8 under LiteRT at each thread count, and ONNX
Runtime (CPU) on the tf2onnx conversion of the same model, the peer a user would pick instead.
Each figure is the median of timed forecasts after warm-up (`kerastp.bench.time_forecasts`);
a preset's LiteRT and ONNX Runtime files are timed interleaved, in 4 rounds of alternating
blocks (each round starting at another file), so that drift on a shared machine falls on
every file of the row alike, and in a fresh process without TensorFlow, as on a device
(`kerastp.bench.time_files_interleaved`).
The weights are the presets' initial ones (latency does not depend on their values); int8 is
calibrated on 16 training sequences of procedural Moving MNIST and keeps in float what the
model names (`Forecaster.int8_float_ops` / `int8_float_layers`), as `kerastp export` does.

Achieved throughput is reported as GMAC/s: multiply-accumulates of one forecast (every layer,
`kerastp.flops.count_macs`) divided by the median latency. One MAC is two FLOPs; the papers'
"FLOPs" are MACs.

    python benchmarks/latency.py                              # tiny + STLight MMNIST presets
    python benchmarks/latency.py --presets ustep_mmnist --append

Writes `benchmarks/results/latency.json` and `.md`.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import append_rows, machine, machines_legend  # noqa: E402

from kerastp import bench, export, registry  # noqa: E402
from kerastp.data.sources import get_source  # noqa: E402
from kerastp.export import convert_to_tflite  # noqa: E402
from kerastp.flops import count_macs  # noqa: E402
from kerastp.saving import write_json  # noqa: E402

DEFAULT_PRESETS = registry.list_presets(tiny=True) + registry.list_presets(
    tiny=False, model="stlight"
)
TFLITE_KINDS = ("none", "fp16", "dynamic", "int8")
#: Interleaved rounds of the LiteRT and ONNX Runtime files (`bench.time_interleaved`). Many
#: short blocks ran worse, not better: 10 rounds of 2 timed runs after 1 warm-up call
#: doubled some 2-thread medians (one run of three tiny presets).
ROUNDS = 4


def _size(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def bench_preset(preset, threads, runs, max_seconds, workdir, log):
    model = registry.build_model(preset)
    macs = count_macs(model).macs
    past = export.probe_batch(model, batch_size=1, seed=0)
    timing = {"warmup": 3, "runs": runs, "max_seconds": max_seconds}
    rows = []

    def record(runtime, forecast=None, threads=None, size=None, note=None, stats=None):
        stats = stats or bench.time_forecasts(forecast, past, **timing)
        rows.append(
            {
                "preset": preset,
                "runtime": runtime,
                "threads": threads,
                "bytes": size,
                "gmacs": macs / 1e9,
                "gmacs_per_second": macs / 1e9 / (stats["median_ms"] / 1e3),
                "note": note,
                **stats,
            }
        )
        log(f"  {runtime:<16} threads {threads!s:<4} median {stats['median_ms']:.2f} ms")

    record("keras_eager", bench.keras_forecaster(model))
    record("keras_xla", bench.keras_forecaster(model, jit_compile=True))
    saved_model = Path(workdir) / preset / "saved_model"
    export.export_saved_model(model, saved_model, preset=preset, probe=past)
    record("saved_model", bench.saved_model_forecaster(saved_model), size=_size(saved_model))
    # LiteRT and ONNX Runtime: timed interleaved in a process without TensorFlow
    # (`bench.time_files_interleaved`), so the ratios within a row depend neither on when in
    # the run each file was timed nor on what TensorFlow left running in this process.
    candidates = {}
    float_source = Path(workdir) / preset / "tflite_float_source"  # as `kerastp export` traces
    export.write_tflite_source(export.float32_model(model), float_source, "none")
    calibration = get_source("procedural").calibration_samples(model, 16)
    for kind in TFLITE_KINDS:
        source = float_source if kind in export.FLOAT_LAYOUT_QUANTIZATIONS else saved_model
        path = Path(workdir) / preset / f"{kind}.tflite"
        runtime = f"tflite_{'fp32' if kind == 'none' else kind}"
        # int8 as `kerastp export` makes it: what the model keeps in float stays float.
        content = convert_to_tflite(source, kind, calibration, model.int8_float_ops,
                                    model.int8_float_layers)  # fmt: skip
        path.write_bytes(content)
        for n in threads:
            try:
                bench.tflite_forecaster(path, n)(past)
            except RuntimeError as error:  # a conversion LiteRT cannot run (e.g. int8 DIV)
                rows.append({"preset": preset, "runtime": runtime, "threads": n,
                             "error": str(error)[:300]})  # fmt: skip
                log(f"  {runtime} does not run: {error}")
            else:
                candidates[(runtime, n)] = (path, n)
    try:
        onnx_path = bench.convert_to_onnx(model, Path(workdir) / preset / "model.onnx")
    except Exception as error:  # noqa: BLE001 - any converter failure is reported, not fatal
        rows.append({"preset": preset, "runtime": "onnxruntime", "error": str(error)[:300]})
        log(f"  onnxruntime unavailable: {error}")
    else:
        for n in threads:
            candidates[("onnxruntime", n)] = (onnx_path, n)
    timed = bench.time_files_interleaved(candidates, past, rounds=ROUNDS, **timing)
    for (runtime, n), (path, _) in candidates.items():
        record(runtime, threads=n, size=_size(path), stats=timed[(runtime, n)])
    return rows


def markdown(payload):
    legend, tag = machines_legend(payload["results"], payload)
    timing = (
        f"up to {payload['runs']} timed runs after 3 warm-up runs, at most "
        f"{payload['max_seconds']:.0f} s per row"
    )
    lines = [
        f"Forecast latency at batch 1 (median of {payload.get('timing_note') or timing}), "
        f"{legend}. "
        "Keras and SavedModel use TensorFlow's default thread pool (all cores). A preset's "
        f"LiteRT and ONNX Runtime files are timed interleaved ({payload.get('rounds', 4)} "
        "rounds of alternating blocks, each with its warm-up runs, each round starting at "
        "another file) in a fresh process without TensorFlow. GMAC/s: "
        "multiply-accumulates of one forecast over the median latency (1 MAC = 2 FLOPs).",
        "",
        "| preset | GMACs | runtime | threads | median ms | p90 ms | GMAC/s | size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        if "error" in r:
            lines.append(f"| {r['preset']}{tag(r)} | | {r['runtime']} | | unavailable | | | |")
            continue
        size = "" if r["bytes"] is None else f"{r['bytes'] / 1e6:.2f} MB"
        threads = "-" if r["threads"] is None else r["threads"]
        lines.append(
            f"| {r['preset']}{tag(r)} | {r['gmacs']:.3f} | {r['runtime']} | {threads} | "
            f"{r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['gmacs_per_second']:.1f} | {size} |"
        )
    return "\n".join(lines) + "\n"


def compact(payload):
    """One row per preset: median ms per runtime (LiteRT and ONNX Runtime as 1 / 2 threads)."""
    columns = [
        ("Keras eager", "keras_eager"),
        ("Keras XLA", "keras_xla"),
        ("SavedModel", "saved_model"),
        ("TFLite fp32", "tflite_fp32"),
        ("TFLite fp16", "tflite_fp16"),
        ("TFLite dynamic", "tflite_dynamic"),
        ("TFLite int8", "tflite_int8"),
        ("ONNX Runtime", "onnxruntime"),
    ]
    presets = list(dict.fromkeys(r["preset"] for r in payload["results"]))
    _, tag = machines_legend(payload["results"], payload)
    lines = [
        "| preset | GMACs | " + " | ".join(name for name, _ in columns) + " | best GMAC/s |",
        "|---|---|" + "---|" * len(columns) + "---|",
    ]
    for preset in presets:
        rows = [r for r in payload["results"] if r["preset"] == preset and "error" not in r]
        cells = []
        for _, runtime in columns:
            found = [r for r in rows if r["runtime"] == runtime]
            cells.append(" / ".join(f"{r['median_ms']:.1f}" for r in found) if found else "n/a")
        best = max(r["gmacs_per_second"] for r in rows)
        lines.append(
            f"| {preset}{tag(rows[0])} | {rows[0]['gmacs']:.3f} | "
            + " | ".join(cells)
            + f" | {best:.1f} |"
        )
    return "\n".join(lines) + "\n"


def report(payload):
    """latency.md: the header, the per-preset summary, then every row."""
    return markdown(payload).replace(
        "\n\n",
        "\n\nSummary, median ms (LiteRT and ONNX Runtime: 1 / "
        "2 threads):\n\n" + compact(payload) + "\nAll rows:\n\n",
        1,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=sorted(registry.PRESETS),
                        default=DEFAULT_PRESETS)  # fmt: skip
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--append", action="store_true", help="keep other presets' rows")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "latency"))
    args = parser.parse_args(argv)

    out = Path(args.out)
    previous, previous_payload, timing_note = [], None, None
    if args.append and out.with_suffix(".json").is_file():
        import json

        old = json.loads(out.with_suffix(".json").read_text())
        previous_payload = old
        previous = [r for r in old["results"] if r["preset"] not in args.presets]
        if (old["runs"], old["max_seconds"]) != (args.runs, args.max_seconds):
            kept = sorted({r["preset"] for r in previous}, key=list(registry.PRESETS).index)
            timing_note = (
                f"up to {old['runs']} timed runs, at most {old['max_seconds']:.0f} s per row for "
                f"{', '.join(kept)}; up to {args.runs} runs, at most {args.max_seconds:.0f} s "
                f"per row for {', '.join(args.presets)}; 3 warm-up runs each"
            )
    results = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        for preset in args.presets:
            print(preset, flush=True)
            results += bench_preset(
                preset, args.threads, args.runs, args.max_seconds, workdir, print
            )
    order = {name: i for i, name in enumerate(registry.PRESETS)}
    info = machine()
    payload = {
        "machine": info,
        "date": time.strftime("%Y-%m-%d"),
        "runs": args.runs,
        "max_seconds": args.max_seconds,
        "timing_note": timing_note,
        "rounds": ROUNDS,
        "threads": args.threads,
        "seconds": time.perf_counter() - start,
        "results": sorted(
            append_rows(previous_payload, previous, results, info), key=lambda r: order[r["preset"]]
        ),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), payload)
    table = report(payload)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(table)
    os.replace(tmp, out.with_suffix(".md"))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
