"""Full-integer TFLite for trained models: held-out MSE and latency, fully integer and selective.

For each trained model (`PATH:DATA`, a `.keras` file and the data source it was trained on:
`run` for a kerastp run directory's own record, or a source name such as `radar`):

1. the float32 TFLite conversion, the fully integer int8 conversion and the selective one
   (the operator types and layers the model keeps in float, `Forecaster.int8_float_ops` /
   `int8_float_layers`, with QUANTIZE / DEQUANTIZE around them), each calibrated on 64
   training sequences of that source (`kerastp.export.quantization_data`);
2. their MSE on the source's held-out sequences (the gate `kerastp export` applies: at most
   +10% over the Keras model) and their LiteRT latency at batch 1, 1 and 2 threads: a
   model's conversions at every thread count timed interleaved in one process without
   TensorFlow (`kerastp.bench.time_files_interleaved`), so the ratios compare like with like.

`--speed-presets` adds untrained presets timed the same way (latency does not depend on the
weights; calibrated on procedural Moving MNIST).

    python benchmarks/nowcasting.py --presets stlight_tiny simvp_tiny tau_tiny ustep_tiny \\
        --steps 300 --out /tmp/nc                                   # the radar-trained models
    python benchmarks/int8.py --models runs/demo/model.keras:run \\
        /tmp/nc/models/stlight_tiny.keras:radar /tmp/nc/models/simvp_tiny.keras:radar \\
        /tmp/nc/models/tau_tiny.keras:radar /tmp/nc/models/ustep_tiny.keras:radar \\
        saved_models/radar/radar.keras:radar --speed-presets stlight_extra_small

Writes `benchmarks/results/int8.json` and `.md`. `--append` keeps the other models' rows, each
with the machine and day it was measured on (the table names them when they differ).
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import append_rows, machine, machines_legend, write_results  # noqa: E402

from kerastp import bench, export, registry  # noqa: E402
from kerastp.data.sources import get_source  # noqa: E402
from kerastp.lite import LiteForecaster  # noqa: E402
from kerastp.runs import RunRecord  # noqa: E402
from kerastp.saving import load_model, read_json  # noqa: E402


def _source(model_path, data):
    if data == "run":
        return RunRecord.of(model_path).source()
    return get_source(data)


def measure(model, name, source, workdir, threads, runs, max_seconds, log, score=True):
    """Rows for one model: fp32, fully integer int8 and (if the model keeps any) selective."""
    representative, validation = export.quantization_data(model, "int8", source, 64)
    past, future = validation
    folder = Path(workdir) / "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    model = export.float32_model(model)
    sources = {}  # the SavedModel each conversion starts from, as `kerastp export` writes it
    for quantize in ("none", "int8"):
        sources[quantize] = folder / f"saved_model_{quantize}"
        export.write_tflite_source(model, sources[quantize], quantize)
    mse_keras = export._mse(export._predict_in_batches(model.predict, past), future)
    kinds = [("fp32", "none", (), ()), ("int8 (fully integer)", "int8", (), ())]
    float_ops, float_layers = tuple(model.int8_float_ops), tuple(model.int8_float_layers)
    if float_ops or float_layers:
        kinds.append(("int8 (selective)", "int8", float_ops, float_layers))
    rows, timed = [], {}  # timed: {row index: its .tflite file}
    for label, quantize, ops, layers in kinds:
        row = {"model": name, "conversion": label, "float_ops": list(ops),
               "float_layers": list(layers), "mse_keras": mse_keras}  # fmt: skip
        path = folder / f"{label.split()[0]}_{len(rows)}.tflite"
        try:
            path.write_bytes(export.convert_to_tflite(sources[quantize], quantize,
                                                      representative, ops, layers))  # fmt: skip
            lite = LiteForecaster(path)
            if score:
                row["mse_tflite"] = export._mse(export._predict_in_batches(lite.predict, past),
                                                future)  # fmt: skip
                row["mse_increase"] = (row["mse_tflite"] - mse_keras) / mse_keras
            else:
                lite.predict(past[:1])  # a conversion LiteRT cannot run fails here
            row["bytes"] = path.stat().st_size
            timed[len(rows)] = path
        except Exception as error:  # noqa: BLE001 - a conversion LiteRT cannot run is a result
            row["error"] = str(error).splitlines()[0][:200]
        rows.append(row)
        log(f"  {label}: {row}")
    files = {(i, n): (path, n) for i, path in timed.items() for n in threads}
    stats = bench.time_files_interleaved(files, past[:1], warmup=3, runs=runs,
                                         max_seconds=max_seconds)  # fmt: skip
    for i in timed:
        rows[i]["latency_ms"] = {n: stats[(i, n)]["median_ms"] for n in threads}
        log(f"  {rows[i]['conversion']}: {rows[i]['latency_ms']} ms")
    fp32 = rows[0].get("latency_ms", {})
    for row in rows[1:]:
        if "latency_ms" in row and fp32:
            row["speed_vs_fp32"] = {n: row["latency_ms"][n] / fp32[n] for n in fp32}
    return rows


def markdown(payload):
    threads = payload["threads"]
    legend, tag = machines_legend(payload["results"], payload)
    lines = [
        f"Full-integer TFLite (LiteRT) for trained models, {legend}. "
        "MSE: OpenSTL's per-frame sum over the source's held-out sequences, in model scale; "
        "the export gate allows +10% over the Keras model. Latency: median ms at batch 1, "
        f"{' / '.join(str(n) for n in threads)} threads; x fp32: latency over the fp32 "
        "conversion's, measured in the same run.",
        "",
        "| model | conversion | kept in float | held-out MSE (Keras) | TFLite MSE | increase | "
        "ms | x fp32 | size |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        kept = ", ".join(r["float_ops"] + [f"layer {n}" for n in r["float_layers"]]) or "-"
        if "error" in r:
            lines.append(f"| {r['model']}{tag(r)} | {r['conversion']} | {kept} | | fails: "
                         f"{r['error'][:80]} | | | | |")  # fmt: skip
            continue
        mse = (f"{r['mse_keras']:.4g} | {r['mse_tflite']:.4g} | {100 * r['mse_increase']:+.2f}%"
               if "mse_tflite" in r else "| | (untrained: speed only)")  # fmt: skip
        ms = " / ".join(f"{r['latency_ms'][n]:.2f}" for n in r["latency_ms"])
        ratio = (" / ".join(f"{v:.2f}" for v in r["speed_vs_fp32"].values())
                 if "speed_vs_fp32" in r else "1")  # fmt: skip
        lines.append(f"| {r['model']}{tag(r)} | {r['conversion']} | {kept} | {mse} | {ms} | "
                     f"{ratio} | {r['bytes'] / 1e6:.2f} MB |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[], metavar="PATH:DATA")
    parser.add_argument("--speed-presets", nargs="*", default=[],
                        choices=sorted(registry.PRESETS))  # fmt: skip
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=5.0)
    parser.add_argument("--append", action="store_true", help="keep other models' rows")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for entry in args.models:
            path, _, data = entry.rpartition(":")
            if not path:
                parser.error(f"--models entries are PATH:DATA, got {entry!r}")
            model = load_model(path)
            stem = Path(path).stem
            name = f"{Path(path).parent.name if stem == 'model' else stem} [{data}]"
            print(f"{name} ({data})", flush=True)
            results += measure(model, name, _source(path, data), workdir, args.threads,
                               args.runs, args.max_seconds, print)  # fmt: skip
        for preset in args.speed_presets:
            print(f"{preset} (untrained, speed only)", flush=True)
            results += measure(registry.build_model(preset), preset, get_source("procedural"),
                               workdir, args.threads, args.runs, args.max_seconds, print,
                               score=False)  # fmt: skip
    previous, kept = Path(args.out) / "int8.json", []
    if args.append and previous.exists():
        measured = {r["model"] for r in results}
        previous = read_json(previous)
        kept = [r for r in previous["results"] if r["model"] not in measured]
    info = machine()
    results = append_rows(previous, kept, results, info)
    payload = {"machine": info, "threads": args.threads, "results": results}
    write_results(args.out, "int8", payload, markdown(payload))


if __name__ == "__main__":
    main()
