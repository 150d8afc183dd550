"""Where TFLite's time goes: per-layer timings, XNNPACK delegation, and the depth-wise forms.

For each preset (initial weights; latency does not depend on their values), at batch 1:

1. the whole model exported as kerastp exports it (fp32 TFLite) and timed under LiteRT at 1
   and 2 threads, with the operators XNNPACK runs and those left to LiteRT's own kernels
   (`kerastp.lite.delegation`);
2. every leaf layer with weights (convolutions, depth-wise convolutions, dense layers,
   normalisations) rebuilt alone at the input shape it sees inside the model, converted the
   same way and timed the same way; identical layers (the 16 mixer blocks of STLight-XS share
   four shapes) are timed once and counted by their number of calls. What the layers do not
   cover (activations, attention products, reshapes, warping) is the whole-model time minus
   their sum, the "other operators" row;
3. the whole model exported with Keras' depth-wise form throughout (how kerastp exported
   before; "before" in the table) against the export now;
4. the dilated depth-wise convolution in Keras' form (`tf.nn.depthwise_conv2d`: SPACE_TO_BATCH_ND
   / DEPTHWISE_CONV_2D / BATCH_TO_SPACE_ND in TFLite, what kerastp exported before) and in the
   native form kerastp exports now (one DEPTHWISE_CONV_2D with its dilation factor).
5. one STLight mixer block at widths 800 to 1400, fp32 and int8, traced whole and in the
   layout float TFLite exports use (`kerastp.layers.stl_mixer.export_layout`: the depth-wise
   branch in channel groups, the point-wise convolution in output-channel chunks where
   measured faster).

GMAC/s is a layer's multiply-accumulates over its median latency; `--matmul` also times a
1x1 convolution at the width of the first preset, this machine's practical fp32 rate.

    python benchmarks/tflite_ops.py --presets stlight_extra_small stlight_tiny simvp_tiny

Writes `benchmarks/results/tflite_ops.json` and `.md`.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kerastp  # noqa: E402, F401, I001  (before Keras: kerastp's backend and oneDNN defaults)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import machine, machine_line, write_results  # noqa: E402

from kerastp import bench, export, registry  # noqa: E402
from kerastp.export import convert_to_tflite  # noqa: E402
from kerastp.flops import _layer_macs  # noqa: E402
from kerastp.layers.depthwise import using_depthwise_implementation  # noqa: E402
from kerastp.lite import LiteForecaster, delegation  # noqa: E402

TIMED_KINDS = (
    "Conv2D",
    "DepthwiseConv2D",
    "Dense",
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
)


def leaf_layers(model):
    """[(layer, input shape at batch 1, calls)] of the leaf layers worth timing alone."""
    records = {}
    wrapped = []

    seen = set()

    def visit(layer):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) in seen:  # a layer reachable twice (an RNN's cell) is wrapped once
                continue
            seen.add(id(child))
            if type(child).__name__ in TIMED_KINDS:
                original = child.call

                def call(*args, _child=child, _original=original, **kwargs):
                    key = id(_child)
                    shape = tuple(int(d) if d is not None else 1 for d in args[0].shape)
                    entry = records.setdefault(key, [_child, shape, 0])
                    entry[2] += 1
                    return _original(*args, **kwargs)

                object.__setattr__(child, "call", call)
                wrapped.append(child)
            visit(child)

    visit(model)
    try:
        shape = (1, *model.input_signature_shape[1:])
        tf.function(lambda past: model(past, training=False)).get_concrete_function(
            tf.TensorSpec(shape, tf.float32)
        )
    finally:
        for layer in wrapped:
            object.__delattr__(layer, "call")
    return [tuple(entry) for entry in records.values()]


def layer_tflite(layer, shape, path, implementation=None, quantize="none", float_ops=()):
    """Writes `layer` alone (a copy with the same config and weights) as a .tflite (fp32, or
    `quantize` calibrated on 16 random inputs, keeping `float_ops` in float), its depth-wise
    convolutions in `implementation` (default: the form exports use)."""
    implementation = implementation or export.DEPTHWISE_FORM
    clone = type(layer).from_config(layer.get_config())
    clone.build(shape)
    clone.set_weights(layer.get_weights())
    archive = keras.export.ExportArchive()
    archive.track(clone)
    with tempfile.TemporaryDirectory() as tmp, using_depthwise_implementation(implementation):
        archive.add_endpoint(
            name="serving_default",
            fn=lambda x: {"forecast": clone(x)},  # BatchNorm: inference without `training`
            input_signature=[tf.TensorSpec(shape, tf.float32, name="frames")],
        )
        archive.write_out(tmp, verbose=False)
        samples = np.random.default_rng(0).normal(size=(16, *shape[1:])).astype(np.float32)
        Path(path).write_bytes(convert_to_tflite(tmp, quantize, samples, float_ops))
    return path


def time_tflite(path, shape, threads, runs, max_seconds):
    """{threads: median ms} of a .tflite file on random input of `shape`."""
    past = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = {}
    for n in threads:
        lite = LiteForecaster(path, num_threads=n)
        stats = bench.time_forecasts(lite.predict, past, warmup=3, runs=runs,
                                     max_seconds=max_seconds)  # fmt: skip
        out[n] = stats["median_ms"]
    return out


def _signature(layer, shape):
    config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable")}
    return type(layer).__name__, repr(sorted(config.items())), shape


def profile_preset(preset, threads, runs, max_seconds, workdir):
    model = registry.build_model(preset)
    shape = (1, *model.input_signature_shape[1:])
    # Before: the export as kerastp wrote it until now (Keras' depth-wise form throughout).
    before_path = workdir / f"{preset}_keras_form.tflite"
    export.DEPTHWISE_FORM = "keras"
    try:
        export.export_tflite(model, before_path, preset=preset)
    finally:
        export.DEPTHWISE_FORM = "native"
    before = time_tflite(before_path, shape, threads, runs, max_seconds)
    whole_path = workdir / f"{preset}.tflite"
    export.export_tflite(model, whole_path, preset=preset)
    whole = time_tflite(whole_path, shape, threads, runs, max_seconds)
    lite = LiteForecaster(whole_path, num_threads=threads[0])
    lite.predict(export.probe_batch(model, batch_size=1))
    delegated = delegation(lite.interpreter)
    groups = {}
    for layer, shape, calls in leaf_layers(model):
        key = _signature(layer, shape)
        group = groups.setdefault(key, {"layer": layer, "shape": shape, "calls": 0, "names": []})
        group["calls"] += calls
        group["names"].append(layer.name)
    rows = []
    for i, group in enumerate(groups.values()):
        layer, shape = group["layer"], group["shape"]
        macs = _layer_macs(layer, shape, layer.compute_output_shape(shape))
        path = layer_tflite(layer, shape, workdir / f"{preset}_{i}.tflite")
        ms = time_tflite(path, shape, threads, runs, max_seconds)
        detail = ""
        if type(layer).__name__ == "DepthwiseConv2D":
            detail = f"k{layer.kernel_size[0]} d{layer.dilation_rate[0]}"
        elif type(layer).__name__ in ("Conv2D",):
            detail = f"k{layer.kernel_size[0]} s{layer.strides[0]} -> {layer.filters}"
        rows.append({
            "kind": type(layer).__name__,
            "detail": detail,
            "input_shape": list(shape),
            "calls": group["calls"],
            "macs_per_call": int(macs[0]) if macs else 0,
            "ms_per_call": {str(n): ms[n] for n in threads},
            "ms_total": {str(n): ms[n] * group["calls"] for n in threads},
            "example": group["names"][0],
        })  # fmt: skip
    covered = {str(n): sum(r["ms_total"][str(n)] for r in rows) for n in threads}
    return {
        "preset": preset,
        "whole_ms": {str(n): whole[n] for n in threads},
        "whole_ms_keras_form": {str(n): before[n] for n in threads},
        "ops_keras_form": LiteForecaster(before_path).ops,
        "delegation": delegated,
        "layers": rows,
        "other_ms": {str(n): whole[n] - covered[str(n)] for n in threads},
    }


def depthwise_forms(width, size, threads, runs, max_seconds, workdir):
    """The 7x7 dilation-3 depth-wise convolution of STLight in the forms an export can take:
    Keras' (SPACE_TO_BATCH_ND around the kernel), one native op with its dilation (49 taps),
    and the native row bands of at most `XNNPACK_MAX_TAPS` taps that kerastp exports."""
    from kerastp.layers import depthwise

    layer = depthwise.DepthwiseConv2D(7, padding="same", dilation_rate=3)
    shape = (1, size, size, width)
    layer.build(shape)
    macs = 49 * size * size * width
    rows = []
    bands = depthwise.XNNPACK_MAX_TAPS
    for form, implementation, max_taps in (
        ("keras", "keras", bands),
        ("native, one op", "native", 10**6),
        ("native, row bands (exported)", "native", bands),
    ):
        depthwise.XNNPACK_MAX_TAPS = max_taps
        try:
            path = layer_tflite(layer, shape, workdir / f"dw_{len(rows)}.tflite",
                                implementation=implementation)  # fmt: skip
        finally:
            depthwise.XNNPACK_MAX_TAPS = bands
        ops = LiteForecaster(path).ops
        ms = time_tflite(path, shape, threads, runs, max_seconds)
        rows.append({"form": form, "ops": ops, "macs": macs,
                     "ms": {str(n): ms[n] for n in threads}})  # fmt: skip
    return rows


def mixer_layouts(widths, size, threads, runs, max_seconds, workdir):
    """One STLMixerBlock on (1, size, size, width) in float32 and in int8 (GELU and MUL kept in
    float, as STLight exports it), traced whole and in kerastp's float TFLite layout
    (`stl_mixer.export_layout`), and with its channel groups alone where the layout also
    splits the point-wise convolution."""
    from kerastp.layers import stl_mixer
    from kerastp.models.stlight import STLight

    rows = []
    for width in widths:
        shape = (1, size, size, width)
        block = stl_mixer.STLMixerBlock(width)
        block.build(shape)
        groups, chunks = stl_mixer.export_layout(width)
        layouts = [("whole", (1, 1))]
        if chunks > 1:
            layouts.append(("channel groups only", (groups, 1)))
        layouts.append(("exported (float TFLite)", (groups, chunks)))
        for name, layout in layouts:
            row = {"width": width, "layout": name, "groups": layout[0], "chunks": layout[1]}
            for kind in ("none", "int8"):
                path = workdir / f"mixer_{width}_{len(rows)}_{kind}.tflite"
                with stl_mixer.using_float_tflite_layout(layout=layout):
                    layer_tflite(block, shape, path, quantize=kind,
                                 float_ops=STLight.int8_float_ops)  # fmt: skip
                ms = time_tflite(path, shape, threads, runs, max_seconds)
                row["ms" if kind == "none" else "int8_ms"] = {str(n): ms[n] for n in threads}
            rows.append(row)
    return rows


def matmul_rate(width, size, threads, runs, max_seconds, workdir):
    """GMAC/s of a 1x1 convolution width -> width on (1, size, size, width): the ceiling."""
    layer = keras.layers.Conv2D(width, 1)
    shape = (1, size, size, width)
    layer.build(shape)
    path = layer_tflite(layer, shape, workdir / "matmul.tflite")
    ms = time_tflite(path, shape, threads, runs, max_seconds)
    macs = size * size * width * width
    return {"shape": list(shape), "macs": macs,
            "gmacs_per_s": {str(n): macs / ms[n] / 1e6 for n in threads}}  # fmt: skip


def markdown(payload):
    threads = payload["threads"]
    lines = [
        f"TFLite (LiteRT {payload['machine']['versions'].get('ai_edge_litert')}) fp32, batch "
        f"1, median ms at {' / '.join(map(str, threads))} threads; "
        f"{machine_line(payload['machine'])}.",
        "Each layer timed alone pays its own invoke, input copy and output allocation, and a "
        "BatchNorm alone is a MUL and an ADD that XNNPACK fuses into its neighbours inside the "
        "model: the layers' sum can exceed the whole model (a negative 'other operators' row).",
        "",
    ]
    if payload.get("depthwise_forms"):
        lines += [
            "**The dilated depth-wise convolution** (7x7, dilation 3, on (1, 32, 32, 800) as in "
            "STLight-XS), in the forms an export can take (at this static batch of 1 the "
            "converter fuses Keras' form into one op too; with the exported models' dynamic "
            "batch it does not). XNNPACK runs depth-wise kernels of at most 25 taps in one "
            "pass; a 49-tap kernel falls to a path several times slower, so kerastp exports "
            "it as row bands (3x7, 3x7, 1x7) summed:",
            "",
            "| form | TFLite ops | ms | GMAC/s |",
            "|---|---|---|---|",
        ]
        for row in payload["depthwise_forms"]:
            ms = " / ".join(f"{row['ms'][str(n)]:.2f}" for n in threads)
            rate = " / ".join(f"{row['macs'] / row['ms'][str(n)] / 1e6:.1f}" for n in threads)
            lines.append(f"| {row['form']} | {', '.join(row['ops'])} | {ms} | {rate} |")
        lines.append("")
    if payload.get("mixer_layouts"):
        lines += [
            "**One STLight mixer block** on (1, 32, 32, d), traced whole and in the layout "
            "kerastp's float TFLite exports use (`kerastp.layers.stl_mixer.export_layout`): the "
            "depth-wise branch in channel groups of at most 200 channels (a 25-tap band's "
            "weights, 20 KB, then stay in L1 while XNNPACK's depth-wise kernel reloads them for "
            "every output pixel), and the point-wise convolution in output-channel chunks for "
            "the widths in `EXPORT_POINTWISE_CHUNKS`. Same products and sums per channel. int8: "
            "GELU and MUL in float, as STLight's int8 exports:",
            "",
            "| d | layout | channel groups | point-wise chunks | fp32 ms | x whole | int8 ms "
            "| x whole |",
            "|---|---|---|---|---|---|---|---|",
        ]
        whole = {}
        for row in payload["mixer_layouts"]:
            cells = []
            for key in ("ms", "int8_ms"):
                ms = [row[key][str(n)] for n in threads]
                base = whole.setdefault((row["width"], key), ms)
                ratio = " / ".join(f"{a / b:.2f}" for a, b in zip(ms, base, strict=True))
                cells += [" / ".join(f"{v:.2f}" for v in ms), ratio]
            lines.append(
                f"| {row['width']} | {row['layout']} | {row['groups']} | {row['chunks']} | "
                + " | ".join(cells) + " |"
            )
        lines.append("")
    if payload.get("matmul"):
        m = payload["matmul"]
        rates = " / ".join(f"{m['gmacs_per_s'][str(n)]:.1f}" for n in threads)
        lines += [f"Point-wise convolution {m['shape']} (the machine's practical fp32 rate): "
                  f"{rates} GMAC/s.", ""]  # fmt: skip
    for p in payload["presets"]:
        d = p["delegation"]
        whole = " / ".join(f"{p['whole_ms'][str(n)]:.2f}" for n in threads)
        before = " / ".join(f"{p['whole_ms_keras_form'][str(n)]:.2f}" for n in threads)
        fallback = ", ".join(f"{k} x{v}" for k, v in d["fallback_ops"].items()) or "none"
        lines += [
            f"### {p['preset']}: {whole} ms",
            "",
            f"Exported with Keras' depth-wise form (before): {before} ms"
            + (" (its graph holds SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND)."
               if "SPACE_TO_BATCH_ND" in p.get("ops_keras_form", []) else "."),
            "",
            f"XNNPACK runs {d['delegated']} of {d['nodes']} operators in {d['partitions']} "
            f"partition(s); LiteRT's own kernels run: {fallback}.",
            "",
            "| layer | input | calls | MMACs/call | ms/call | ms total | share | GMAC/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        n0 = str(threads[-1])
        for r in sorted(p["layers"], key=lambda r: -r["ms_total"][n0]):
            per = " / ".join(f"{r['ms_per_call'][str(n)]:.3f}" for n in threads)
            total = " / ".join(f"{r['ms_total'][str(n)]:.2f}" for n in threads)
            share = r["ms_total"][n0] / p["whole_ms"][n0]
            rate = r["macs_per_call"] / r["ms_per_call"][n0] / 1e6 if r["macs_per_call"] else 0
            lines.append(
                f"| {r['kind']} {r['detail']} | {tuple(r['input_shape'][1:])} | {r['calls']} "
                f"| {r['macs_per_call'] / 1e6:.2f} | {per} | {total} | {100 * share:.0f}% "
                f"| {rate:.1f} |"
            )
        other = " / ".join(f"{p['other_ms'][str(n)]:.2f}" for n in threads)
        share = p["other_ms"][n0] / p["whole_ms"][n0]
        lines += [f"| other operators (activations, products, reshapes, ...) | | | | | {other} "
                  f"| {100 * share:.0f}% | |", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["stlight_extra_small", "stlight_tiny"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=5.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    for name in args.presets:
        registry.get_preset(name)
    payload = {"benchmark": "tflite_ops", "machine": machine(), "threads": args.threads,
               "presets": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        payload["depthwise_forms"] = depthwise_forms(800, 32, args.threads, args.runs,
                                                     args.max_seconds, workdir)  # fmt: skip
        payload["mixer_layouts"] = mixer_layouts((800, 1000, 1200, 1400), 32, args.threads,
                                                 args.runs, args.max_seconds, workdir)  # fmt: skip
        payload["matmul"] = matmul_rate(800, 32, args.threads, args.runs, args.max_seconds,
                                        workdir)  # fmt: skip
        for preset in args.presets:
            print(f"[{preset}] ...", flush=True)
            payload["presets"].append(
                profile_preset(preset, args.threads, args.runs, args.max_seconds, workdir)
            )
            write_results(args.out, "tflite_ops", payload, markdown(payload))
            keras.backend.clear_session()
    table = markdown(payload)
    write_results(args.out, "tflite_ops", payload, table)
    print(table)
    return payload


if __name__ == "__main__":
    main()
