"""Turns a trained `.keras` file into a shipped pretrained model, verified and documented.

    python benchmarks/ship_pretrained.py mmnist --keras RUN/mmnist.keras \
        --recipe benchmarks/results/gpu/pretrain_mmnist.json --mnist ../shared/data/mnist/mnist.npz
    python benchmarks/ship_pretrained.py radar --keras OUT/models/ROW.keras \
        --recipe OUT/nowcasting.json --row "ROW NAME" --selection "HOW IT WAS CHOSEN"

Writes, for NAME (a key of `kerastp.registry.PRETRAINED`):

- saved_models/NAME/NAME.keras (+ .json sidecar): float32, no optimizer state, parity-checked;
- tflite/NAME/NAME.tflite (float32) and the first quantised variant that passes kerastp's
  verification, tried in the order int8, dynamic, fp16 (+ sidecars);
- saved_models/NAME/examples.npz: a few fixed test-set sequences (uint8) for offline demos
  (radar: a few validation windows in model scale, with the providers' terms);
- saved_models/NAME/MODEL_CARD.md and model_card.json: data and licence, protocol, recipe,
  hardware and wall time, full test-set metrics of the model and of persistence, per-lead
  MSE, TFLite sizes, parity and latencies, known limits; forecast.png and per_lead.png;
- prints the SHA-256 of every shipped model file, to be recorded in `registry.PRETRAINED`.

Every file is checked by reloading it and comparing numbers before the card is written.
"""

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

EXAMPLES = 8
MNIST_ATTRIBUTION = (
    "Sequences made from MNIST test digits (Y. LeCun, C. Cortes, C. J. C. Burges, "
    "http://yann.lecun.com/exdb/mnist/, CC BY-SA 3.0), moved by kerastp's seeded Moving "
    "MNIST generator (the first sequences of its fixed test set)."
)


def per_lead_plot(values, reference, path, title):
    """A small PNG bar chart of per-lead MSE (model: dark, persistence: light)."""
    from PIL import Image, ImageDraw

    width, height, margin = 420, 220, 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    top = max(max(values), max(reference)) * 1.05
    slot = (width - 2 * margin) / len(values)
    for i, (value, ref) in enumerate(zip(values, reference, strict=True)):
        x = margin + i * slot
        for offset, v, colour in ((0.1, ref, (190, 190, 220)), (0.45, value, (40, 60, 140))):
            y = height - margin - (height - 2 * margin) * v / top
            draw.rectangle([x + offset * slot, y, x + (offset + 0.4) * slot,
                            height - margin], fill=colour)
        draw.text((x + 0.3 * slot, height - margin + 4), str(i + 1), fill="black")
    draw.text((margin, 6), title, fill="black")
    draw.text((width - 190, 6), "model (dark) vs persistence", fill="black")
    import io

    from kerastp.saving import atomic_write

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())


def tflite_section(card, number_format, held_out):
    """The card's TFLite table (sizes, checks, latencies) and the refused conversions."""
    lines = [
        "## TFLite",
        "| file | bytes | check | latency batch 1, 1 thread | 2 threads |",
        "|---|---|---|---|---|",
    ]
    for row in card["tflite"].values():
        parity = row["parity"]
        if "mse_tflite" in parity:
            check = (f"MSE {parity['mse_keras']:{number_format}} -> "
                     f"{parity['mse_tflite']:{number_format}} "
                     + held_out.format(n=parity["held_out_sequences"]))
        else:
            check = f"max abs error {parity['max_abs_error']:.1e}"
        kept = row.get("float_ops", []) + row.get("float_layers", [])
        if kept:
            check += f"; kept in float: {', '.join(kept)}"
        lines.append(f"| {row['path']} | {row['bytes']:,} | {check} | "
                     f"{row['latency_ms'].get('1')} ms | {row['latency_ms'].get('2')} ms |")
    lines.append(
        f"\nLatencies: medians measured on the machine that shipped the files "
        f"({card.get('ship_machine')}), "
        + ("every file at both thread counts timed interleaved in one process without "
           "TensorFlow." if card.get("latency_method") == "interleaved" else "each file timed "
           "in turn in the shipping process.")
    )
    for quantize, why in card.get("tflite_refused", {}).items():
        lines.append(f"\n`{quantize}` was refused by the export's verification: "
                     f"{why.split(';')[0]}.")
    return lines


RADAR_ATTRIBUTION = (
    "Radar rain-rate windows of the pysteps example data (FMI 2017-05-09, MeteoSwiss "
    "2017-01-31), imported with pysteps and averaged to 4 km; research and benchmark use "
    "only, cite the data providers (FMI, MeteoSwiss) and pysteps."
)
RADAR_LICENCE = (
    "pysteps example data collection (MeteoSwiss, FMI, RMI, BoM, EUMETNET OPERA): research "
    "and benchmark use only, cite the providers and pysteps; RMI data must not be used "
    "commercially (the collection's own disclaimer), and the model was trained on an RMI event."
)
RADAR_EXAMPLES = 4


#: How a radar card's run was chosen when its JSON does not say (cards shipped before
#: `--selection` existed).
SELECTION_BY_VALIDATION = (
    "the shipped run was chosen among the benchmark's trained variants by these scores"
)


def render_radar_card(card):
    """MODEL_CARD.md of a radar nowcaster from model_card.json."""
    test, recipe, training = card["test"], card["recipe"], card["training"]
    rows = card["comparison"]
    lines = [
        f"# Pretrained `{card['name']}`",
        "",
        card["description"],
        "",
        "```python",
        "import kerastp",
        f'model = kerastp.from_preset("{card["name"]}")          # Keras model, model scale',
        f'lite = kerastp.from_preset("{card["name"]}", kind="tflite")  # LiteRT forecaster',
        "```",
        f"`kerastp predict --model {card['name']} --inputs past_mm_h.npy --out forecast.npy` "
        "takes (6, 64, 64, 1) rain rates in mm/h (5-minute steps, 4 km pixels) and writes 12 "
        f"frames in mm/h; `kerastp evaluate --model {card['name']}` scores it on the "
        "validation events (needs the radar data folder).",
        "",
        "![forecast](forecast.png)",
        "",
        "## Scores on the validation events",
        f"The {test['windows']} windows (stride 3) of {', '.join(test['events'])}, never seen "
        f"in training ({card.get('selection', SELECTION_BY_VALIDATION)}); 6 x 5 min in, 12 x "
        "5 min out. MSE in (mm/h)² per "
        "pixel; CSI at 1 and 5 mm/h and FSS (1 mm/h, 8 px), pysteps conventions. pysteps "
        "rows from the same benchmark run (`benchmarks/nowcasting.py`).",
        "",
        "| forecaster | MSE | MSE +5 | MSE +30 | MSE +60 | CSI 1 | CSI 5 | FSS | FSS +30 "
        "| FSS +60 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mse, fss = r["mse_mm_h_per_lead_time"], r["fss_per_lead_time"]
        lines.append(
            f"| {r['name']} | {r['mse_mm_h']:.3f} | {mse[0]:.3f} | {mse[5]:.3f} | {mse[-1]:.3f} "
            f"| {r['csi']['1.0']:.3f} | {r['csi']['5.0']:.3f} | {r['fss']:.3f} "
            f"| {fss[5]:.3f} | {fss[-1]:.3f} |"
        )
    lines += [
        "",
        f"Reloaded and rescored when shipped: MSE {test['mse_mm_h']:.4f} (mm/h)², CSI 1 mm/h "
        f"{test['csi_1.0']:.4f}, FSS {test['fss']:.4f}.",
        "",
        "MSE (mm/h)² per lead time (5 to 60 min), model (dark) and persistence (light):",
        "",
        "![per-lead MSE](per_lead.png)",
        "",
        "## Data and licence",
        card["data"]["protocol"],
        f"Licence of the data: {card['data']['licence']}",
        "",
        "## Recipe",
        f"- model: `{card['model_class']}` {json.dumps(recipe['overrides'])} on the preset "
        f"`{recipe['preset']}` ({card['params']:,} parameters)",
        f"- data: {recipe['train_windows']} training windows at stride {recipe['stride']} of "
        f"six events, augmentation `{recipe['augment']}`, seed {recipe['seed']}",
        f"- loss `{recipe['loss']}`"
        + (" (MotionCast's default, the mean squared error)" if recipe["loss"] == "auto" else "")
        + f", batch {recipe['batch_size']}, one-cycle Adam (peak "
        f"{recipe['learning_rate']}), {recipe['steps']} steps ({recipe['passes']} passes)",
        f"- hardware: {training['machine']}; fit {training['fit_s']:.0f} s",
        f"- re-run: `{training['command']}`, then `{training['ship_command']}`",
        "",
        *tflite_section(card, ".5f", "(model scale) on {n} held-out windows"),
    ]
    lines += [
        "",
        "## Files (SHA-256, checked on every load)",
        *[f"- `{f['path']}` `{f['sha256']}`" for f in card["files"].values()],
        "",
        "## Known limits",
        "- Trained on six storms (two networks' 5-minute events plus BoM's 6-minute and "
        "OPERA's 15-minute ones): a small sample of weather; scored on two more.",
        "- 64x64 fields at 4 km (256 km squares), rain rate in kerastp's radar model scale; "
        "other pixel sizes or time steps change what a pixel per step means.",
        "- One motion field per forecast (stationary motion over the hour, as pysteps' "
        "extrapolation); deterministic, no ensemble.",
        "",
    ]
    return "\n".join(lines)


def _on_cpu(hw):
    return (hw.get("device") or "cpu").lower() == "cpu"


def hardware_words(hw):
    """A training record's `hardware` in words: the device, backend and versions."""
    device = hw.get("device")
    if _on_cpu(hw):
        device = f"CPU, {hw.get('cpu') or 'model not recorded'}, {hw.get('cpu_count')} cores"
    versions = ", ".join(f"{label} {hw[key]}" for key, label in (
        ("jax", "JAX"), ("tensorflow", "TensorFlow"), ("torch", "PyTorch"), ("keras", "Keras"))
        if hw.get(key))  # fmt: skip
    return f"{device} ({hw.get('backend')} backend, {versions})"


def _continued_from(init):
    """Recipe lines for a run that continued from an earlier model (`pretrain.py --init`)."""
    if not init:
        return []
    trained = init.get("trained") or {}
    plan, hw = trained.get("plan") or {}, trained.get("hardware") or {}
    kept = (f"; kept in git: `git show {init['git_commit'][:12]}:{init['path']}`"
            if init.get("git_commit") else "")
    lines = [f"- continued from `{init['path']}` (SHA-256 `{init['sha256']}`{kept}), itself "
             f"trained {plan.get('total_steps', '?')} steps on {hardware_words(hw)}: "
             f"`{trained.get('command')}`"]
    if init.get("steps_before") is not None:
        lines.append(f"- steps before this run, over the whole chain: {init['steps_before']}")
    return lines


def _with_git_commit(init):
    """The init record plus `git_commit`: where the file it started from is kept once the
    continuation replaces it (None when no commit of this checkout holds it)."""
    if not init or init.get("git_commit"):
        return init
    from _common import git_commit_holding

    return {**init, "git_commit": git_commit_holding(ROOT / init["path"], init["sha256"])}


def render_card(card):
    """MODEL_CARD.md from model_card.json."""
    if card.get("kind") == "nowcasting":
        return render_radar_card(card)
    test, base = card["test"], card.get("persistence") or {}
    training, plan, recipe = card["training"], card["plan"], card["recipe"]
    hw = training.get("hardware") or {}
    steps_in_all = plan["total_steps"] + ((card.get("init") or {}).get("steps_before") or 0)
    lines = [
        f"# Pretrained `{card['name']}`",
        "",
        card["description"],
        "",
        "```python",
        "import kerastp",
        f'model = kerastp.from_preset("{card["name"]}")          # Keras model',
        f'lite = kerastp.from_preset("{card["name"]}", kind="tflite")  # LiteRT forecaster',
        "```",
        f"`kerastp predict --model {card['name']} --out forecast.png`, "
        f"`kerastp evaluate --model {card['name']}`.",
        "",
        "![forecast](forecast.png)",
        "",
        "## Scores on the full fixed test set",
        f"{test['n_sequences']} sequences of kerastp's fixed Moving MNIST test set (MNIST test "
        "digits), OpenSTL's metrics (MSE and MAE: per-frame sums over pixels, frames in [0, 1]).",
        "",
        "| forecast | MSE | MAE | SSIM | PSNR |",
        "|---|---|---|---|---|",
        f"| {card['name']} | {test['mse']:.2f} | {test['mae']:.2f} | {test['ssim']:.4f} | "
        f"{test['psnr']:.2f} |",
    ]
    if base:
        lines.append(f"| repeat the last input frame | {base['mse']:.2f} | {base['mae']:.2f} | "
                     f"{base['ssim']:.4f} | {base['psnr']:.2f} |")
    if card.get("check"):
        check = card["check"]
        lines.append(f"\nThe first {check['sequences']} of these sequences, which the tests "
                     f"reproduce from the shipped file (relative 1e-4): MSE {check['mse']:.4f}, "
                     f"SSIM {check['ssim']:.4f}.")
    if any(math.isinf(row.get("psnr", 0.0)) for row in (test, base)):
        lines.append(
            "\nPSNR inf: a forecast frame equal to its target has infinite PSNR (OpenSTL's "
            "convention), and one such frame makes the mean infinite. In this test set a "
            "future frame repeats the last input frame exactly (both digits back where they "
            "were after bouncing)."
        )
    lines += [
        "",
        "MSE per lead frame (1 to 10):",
        "",
        "![per-lead MSE](per_lead.png)",
        "",
        "## Data and licence",
        card["data"]["protocol"],
        f"Licence of the data: {card['data']['licence']} The shipped example sequences "
        "(examples.npz) are made from MNIST test digits with the same attribution.",
        "",
        "## Recipe",
        f"- model: `{card['model_class']}` {json.dumps(recipe['model_args'])}"
        f" ({card['params']:,} parameters)",
        f"- data: fresh Moving MNIST sequences from the MNIST train digits, seed {recipe['seed']}",
        f"- batch {recipe['batch_size']}, one-cycle Adam (peak {recipe['max_learning_rate']}), "
        f"{plan['total_steps']} steps ({plan['epochs']} x {plan['steps_per_epoch']}), "
        f"{plan['dtype']}{' (mixed precision)' if plan['dtype'] != 'float32' else ''}, "
        f"depth-wise form `{plan['depthwise']}`",
        f"- hardware: {hardware_words(hw)}; fit {training.get('fit_s')} s, whole run "
        f"{training.get('wall_s')} s, {training.get('date')}",
        *_continued_from(card.get("init")),
        f"- re-run: `{training.get('command')}`"
        + (" (on a GPU machine with the Keras JAX backend; see benchmarks/gpu_session.sh)"
           if not _on_cpu(hw) else " (Keras "
           f"{hw.get('backend')} backend, set by KERAS_BACKEND)")
        + ", then "
        f"`python benchmarks/ship_pretrained.py {card['name']} --keras DIR/{card['name']}.keras "
        "--recipe DIR/recipe.json`",
        "",
        *tflite_section(card, ".1f", "on {n} held-out sequences"),
    ]
    lines += [
        "",
        "## Files (SHA-256, checked on every load)",
        *[f"- `{f['path']}` `{f['sha256']}`" for f in card["files"].values()],
        "",
        "## Known limits",
        f"- Trained for {steps_in_all:,} steps of {recipe['batch_size']} sequences in all "
        f"({steps_in_all * recipe['batch_size']:,} sequences), not the papers' 200 epochs of "
        "10,000 (2,000,000): the forecast blurs after a few frames (see the per-lead figure); "
        "far from STLight-XS's published MSE 24.5.",
        "- Moving MNIST only: two 28x28 digits on a 64x64 black canvas, 10 frames in, 10 out.",
        *(["- Full int8 TFLite loses too much accuracy (see above); use the float or the "
            "variant shipped."] if "int8" in card.get("tflite_refused", {}) else
          ["- The int8 file keeps the operators named in its row in float (selective int8): "
           "a fully integer STLight loses too much accuracy."]),
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--keras", help="the trained .keras file (--check-only: the shipped one)")
    ap.add_argument("--recipe", help="the training run's recipe.json")
    ap.add_argument("--mnist", default=None)
    ap.add_argument("--row", default=None,
                    help="radar: the row of the nowcasting.json given as --recipe")
    ap.add_argument("--selection", default=None,
                    help="radar: how the run and its settings were chosen, for the card "
                    "(default: by the validation scores, among the benchmark's variants)")
    ap.add_argument("--test-sequences", type=int, default=10_000)
    ap.add_argument("--quantized-order", default="int8,dynamic,fp16")
    ap.add_argument("--card-only", action="store_true",
                    help="only write MODEL_CARD.md from the existing model_card.json")
    ap.add_argument("--check-only", action="store_true",
                    help="only record the shipped model's reproduction check in its card")
    args = ap.parse_args(argv)
    card_json = ROOT / "saved_models" / args.name / "model_card.json"
    if not (args.card_only or args.check_only) and not (args.keras and args.recipe):
        ap.error("--keras and --recipe are required to ship a model")
    if args.check_only:
        from kerastp.saving import atomic_write, write_json

        card = json.loads(card_json.read_text())
        if card.get("kind") == "nowcasting":
            raise SystemExit(f"{args.name}: a nowcaster's card is reproduced on its validation "
                             "windows (tests/test_pretrained.py), not by --check-only")
        keras_path = args.keras or ROOT / card["files"]["keras"]["path"]
        card["check"] = reproduction_check(keras_path, card["data"]["source"], args.mnist)
        write_json(card_json, card)
        atomic_write(card_json.with_name("MODEL_CARD.md"), render_card(card).encode())
        return card
    if args.card_only:
        from kerastp.saving import atomic_write

        card = json.loads(card_json.read_text())
        atomic_write(card_json.with_name("MODEL_CARD.md"), render_card(card).encode())
        return card

    import keras

    import kerastp
    from kerastp.data.standard_set import standard_test_set
    from kerastp.export import ExportVerificationError, export_artifacts, export_keras
    from kerastp.pretrained import sha256
    from kerastp.registry import PRETRAINED
    from kerastp.runs import DEFAULT_DATA_SCALE, sidecar_path
    from kerastp.saving import load_model, read_json, save_npz, write_json
    from kerastp.visualize import save_forecast_strip

    entry = PRETRAINED[args.name]
    recipe = json.loads(Path(args.recipe).read_text())
    from kerastp.registry import get_source_class

    source_class = get_source_class(entry["data"])
    nowcasting = source_class.SCORING == "nowcasting"
    if nowcasting:
        benchmark = recipe
        chosen = [r for r in benchmark["results"] if r["name"] == args.row]
        if not chosen:
            raise SystemExit(f"--row {args.row!r} is not a row of {args.recipe}")
        recipe = {"recipe": chosen[0], "hardware": {"backend": "tensorflow"}}
    model_dir = ROOT / "saved_models" / args.name
    lite_dir = ROOT / "tflite" / args.name
    model_dir.mkdir(parents=True, exist_ok=True)
    lite_dir.mkdir(parents=True, exist_ok=True)

    # 1. The .keras file: float32 policy, no optimizer state, parity-checked on reload.
    trained = load_model(args.keras)
    config = trained.get_config()
    config.update(dtype="float32", name=args.name)
    model = type(trained).from_config(config)
    model.set_weights(trained.get_weights())
    keras_path = model_dir / f"{args.name}.keras"
    sidecar = export_keras(model, keras_path,
                           data_scale=source_class.DATA_SCALE or DEFAULT_DATA_SCALE)
    sidecar.update(
        preset=None,
        pretrained=args.name,
        data=entry["data"],
        backend=recipe.get("hardware", {}).get("backend"),
        recipe=recipe.get("recipe"),
        plan=recipe.get("plan"),
    )
    write_json(sidecar_path(keras_path), sidecar)

    # 2. TFLite: float32, then the first quantised variant that passes verification.
    tflite = {}
    written = export_artifacts(keras_path, formats=("tflite",), tflite_dir=str(lite_dir),
                               data=entry["data"], mnist_path=args.mnist)
    tflite["tflite"] = written["tflite"]
    refused = {}
    for quantize in args.quantized_order.split(","):
        try:
            written = export_artifacts(keras_path, formats=("tflite",), tflite_dir=str(lite_dir),
                                       quantize=quantize, data=entry["data"],
                                       mnist_path=args.mnist)
        except (ExportVerificationError, ValueError) as error:
            refused[quantize] = str(error)
            print(f"{quantize}: refused: {error}", flush=True)
            continue
        tflite[f"tflite_{quantize}"] = written["tflite"]
        break

    if nowcasting:
        return ship_nowcaster(args, entry, model, keras_path, tflite, refused, benchmark,
                              recipe["recipe"])

    # 3. Scores on the full fixed test set, model and persistence.
    start = time.perf_counter()
    scores = kerastp.evaluate(keras_path, entry["data"], num_sequences=args.test_sequences,
                              mnist_path=args.mnist, batch_size=50, persistence=True)
    eval_s = time.perf_counter() - start
    check = reproduction_check(keras_path, entry["data"], args.mnist)

    # 4. Shipped example sequences and pictures.
    test = np.asarray(standard_test_set(EXAMPLES, source=entry["data"], path=args.mnist))
    save_npz(model_dir / "examples.npz", sequences=test,
             attribution=np.array(MNIST_ATTRIBUTION))
    past = test[:, :10].astype(np.float32) / 255.0
    forecast = np.clip(np.asarray(model.predict(past, verbose=0)), 0, 1)
    save_forecast_strip(past[0], test[0, 10:].astype(np.float32) / 255.0, forecast[0],
                        model_dir / "forecast.png")
    per_lead_plot(scores["mse_per_frame"], scores["persistence"]["mse_per_frame"],
                  model_dir / "per_lead.png", f"{args.name}: MSE per lead frame")

    # 5. TFLite sizes and latencies (batch 1, 1 and 2 threads).
    lite_rows = _lite_rows(tflite)

    files = {"keras": keras_path, **{k: Path(v[0]) for k, v in tflite.items()},
             "examples": model_dir / "examples.npz"}
    checksums = {kind: {"path": str(path.relative_to(ROOT)), "sha256": sha256(path)}
                 for kind, path in files.items()}
    card = {
        "name": args.name,
        "description": entry["description"],
        "model_class": type(model).__name__,
        "config": model.get_config(),
        "params": int(model.count_params()),
        "data": {
            "source": entry["data"],
            "licence": "MNIST: CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. J. C. Burges).",
            "protocol": "Moving MNIST, 64x64, two digits, 10 frames in, 10 out; trained on "
            "fresh sequences from the 60,000 MNIST train digits; scored on kerastp's fixed "
            "test set (MNIST test digits) with OpenSTL's metrics.",
        },
        "recipe": recipe.get("recipe"),
        "plan": recipe.get("plan"),
        "init": _with_git_commit(recipe.get("init")),
        "training": {k: recipe.get(k) for k in ("fit_s", "wall_s", "hardware", "date",
                                                 "command", "loss")},
        "test": {k: scores[k] for k in scores if not isinstance(scores[k], dict)},
        "persistence": scores.get("persistence"),
        "eval_seconds": round(eval_s, 1),
        "check": check,
        "tflite": lite_rows,
        "latency_method": "interleaved",
        "tflite_refused": refused,
        "files": checksums,
        "versions": {"keras": keras.__version__, "kerastp": kerastp.__version__},
        "created": time.strftime("%Y-%m-%d"),
        "ship_machine": ship_machine(),
    }
    write_json(model_dir / "model_card.json", card)
    from kerastp.saving import atomic_write

    atomic_write(model_dir / "MODEL_CARD.md", render_card(card).encode())
    print(json.dumps({"files": checksums, "test": card["test"]}, indent=1))
    # Reload check of what the card describes.
    reloaded = load_model(keras_path)
    np.testing.assert_allclose(np.asarray(reloaded.predict(past, verbose=0)),
                               np.asarray(model.predict(past, verbose=0)), atol=1e-5)
    assert read_json(sidecar_path(keras_path))["pretrained"] == args.name
    return card


#: Test sequences of the reproduction check: the tests reproduce its scores (rel. 1e-4).
CHECK_SEQUENCES = 100


def reproduction_check(keras_path, data, mnist_path=None):
    """Scores on the first `CHECK_SEQUENCES` test sequences, computed as
    `kerastp.evaluate(name, num_sequences=CHECK_SEQUENCES)` computes them (default batch),
    so that `tests/test_pretrained.py` reproduces them from the shipped file."""
    import kerastp

    scores = kerastp.evaluate(str(keras_path), data, num_sequences=CHECK_SEQUENCES,
                              mnist_path=mnist_path)
    return {"sequences": CHECK_SEQUENCES,
            **{k: float(scores[k]) for k in ("mse", "mae", "ssim", "psnr")}}


def ship_machine():
    """The shipping machine in words: CPU, cores and the TensorFlow / LiteRT versions."""
    from _common import machine, machine_line

    return machine_line(machine())


def _lite_rows(tflite):
    """Sizes, checks and latencies of the shipped `.tflite` files: every file at 1 and 2
    threads timed interleaved in one process without TensorFlow
    (`kerastp.bench.time_files_interleaved`), on one random input of the files' shape."""
    import numpy as np

    from kerastp.bench import time_files_interleaved
    from kerastp.lite import LiteForecaster

    shape = LiteForecaster(next(iter(tflite.values()))[0]).input_shape[1:]
    past = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    files = {(kind, n): (path, n) for kind, (path, _) in tflite.items() for n in (1, 2)}
    timed = time_files_interleaved(files, past, warmup=3, runs=40, max_seconds=20)
    rows = {}
    for kind, (path, lite_sidecar) in tflite.items():
        rows[kind] = {
            "path": str(Path(path).relative_to(ROOT)),
            "bytes": Path(path).stat().st_size,
            "parity": lite_sidecar["parity"],
            "float_ops": lite_sidecar.get("float_ops", []),
            "float_layers": lite_sidecar.get("float_layers", []),
            "latency_ms": {str(n): round(timed[(kind, n)]["median_ms"], 2) for n in (1, 2)},
        }
    return rows


def ship_nowcaster(args, entry, model, keras_path, tflite, refused, benchmark, row):
    """Steps 3-5 for a radar nowcaster: validation scores next to the benchmark's rows,
    example windows, pictures, the card."""
    import keras

    import kerastp
    from kerastp.data import radar
    from kerastp.evaluation.evaluate import summary
    from kerastp.pretrained import sha256
    from kerastp.saving import atomic_write, load_model, save_npz, write_json
    from kerastp.visualize import save_forecast_strip

    scores = kerastp.evaluate(keras_path, entry["data"])
    headline = summary(scores)["model"]
    if abs(headline["mse_mm_h"] - row["mse_mm_h"]) > 1e-4 * row["mse_mm_h"]:
        raise SystemExit(
            f"the shipped model scores MSE {headline['mse_mm_h']:.6f}, the benchmark row "
            f"{row['mse_mm_h']:.6f}: not the model of that row"
        )
    past, future, info = radar.radar_arrays("val", return_info=True)
    index = int(benchmark.get("pictured_window", {}).get("index", 0))
    picks = sorted({index, *np.linspace(0, len(past) - 1, RADAR_EXAMPLES - 1).astype(int)})
    model_dir = keras_path.parent
    save_npz(model_dir / "examples.npz", past=past[picks].astype(np.float16),
             future=future[picks].astype(np.float16), event=info["event"][picks],
             issue_time=info["issue_time"][picks].astype(str),
             attribution=np.array(RADAR_ATTRIBUTION))
    forecast = np.clip(np.asarray(model.predict(past[index:index + 1], verbose=0)), 0, 1)
    save_forecast_strip(past[index], future[index], forecast[0], model_dir / "forecast.png")
    per_lead_plot(scores["model"]["mse_rain_rate"]["per_lead_time"],
                  scores["persistence"]["mse_rain_rate"]["per_lead_time"],
                  model_dir / "per_lead.png", f"{args.name}: MSE (mm/h)^2 per lead time")
    lite_rows = _lite_rows(tflite)
    files = {"keras": keras_path, **{k: Path(v[0]) for k, v in tflite.items()},
             "examples": model_dir / "examples.npz"}
    checksums = {kind: {"path": str(path.relative_to(ROOT)), "sha256": sha256(path)}
                 for kind, path in files.items()}
    keep = {"no rain (all zero)", "persistence", "pysteps LK", "pysteps S-PROG",
            "kerastp Lucas-Kanade (untrained MotionCast)", row["name"]}
    card = {
        "name": args.name,
        "kind": "nowcasting",
        "description": entry["description"],
        "model_class": type(model).__name__,
        "config": model.get_config(),
        "params": int(model.count_params()),
        "data": {
            "source": entry["data"],
            "licence": RADAR_LICENCE,
            "protocol": "Radar rain rate in kerastp's model scale x = log1p(R) / log1p(100), "
            "64x64 at 4 km; 6 frames in, 12 out; trained on fmi_20160928, mch_20150515, "
            "mch_20160711, rmi_20210704, bom_20180616, opera_20180824; validated on "
            "fmi_20170509 and mch_20170131 (split by whole events).",
        },
        "recipe": {**{k: row[k] for k in ("preset", "loss", "augment", "overrides", "steps",
                                          "passes", "learning_rate")},
                   "train_windows": benchmark["train_windows"], "stride": benchmark["stride"],
                   "seed": benchmark["seed"], "batch_size": benchmark["batch_size"]},
        "training": {
            "fit_s": row["train_seconds"],
            "machine": f"{benchmark['machine']['cpu']}, {benchmark['machine']['cores']} cores",
            "command": benchmark.get("command", "python benchmarks/nowcasting.py"),
            "ship_command": f"python benchmarks/ship_pretrained.py {args.name} --keras "
            f"<out>/models/<row>.keras --recipe <out>/nowcasting.json --row '{row['name']}'"
            + (f" --selection {shlex.quote(args.selection)}" if args.selection else ""),
        },
        "test": {**headline, "windows": scores["windows"], "events": list(scores["events"])},
        "selection": args.selection or SELECTION_BY_VALIDATION,
        "comparison": [r for r in benchmark["results"] if r["name"] in keep],
        "tflite": lite_rows,
        "latency_method": "interleaved",
        "tflite_refused": refused,
        "files": checksums,
        "versions": {"keras": keras.__version__, "kerastp": kerastp.__version__},
        "created": time.strftime("%Y-%m-%d"),
        "ship_machine": ship_machine(),
    }
    write_json(model_dir / "model_card.json", card)
    atomic_write(model_dir / "MODEL_CARD.md", render_card(card).encode())
    print(json.dumps({"files": checksums, "test": card["test"]}, indent=1, default=str))
    reloaded = load_model(keras_path)
    np.testing.assert_allclose(np.asarray(reloaded.predict(past[:4], verbose=0)),
                               np.asarray(model.predict(past[:4], verbose=0)), atol=1e-5)
    return card


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    main()
