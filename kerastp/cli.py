"""`kerastp` command line: a thin front end; every handler calls one library function."""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from kerastp import options


def _set_verbosity(verbose):
    """Quiet by default: no TensorFlow log lines, no warnings about things kerastp already
    handles; `kerastp --verbose` (or KERASTP_VERBOSE=1) brings every diagnostic back."""
    from kerastp.backend import VERBOSE_ENV_VAR

    if verbose:
        os.environ[VERBOSE_ENV_VAR] = "1"
        return
    if os.environ.get(VERBOSE_ENV_VAR, "") in ("", "0"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        from kerastp.runs import MovedRunWarning  # imports neither TensorFlow nor Keras

        warnings.filterwarnings("default", category=MovedRunWarning)
        warnings.formatwarning = _one_line_warning


def _one_line_warning(message, category, *args, **kwargs):
    """A warning the quiet CLI lets through, as one line like its errors (no source line)."""
    return f"kerastp: warning: {message}\n"


def _fit_verbosity(verbose):
    """`--verbose` as Keras' `fit` takes it; unset, a progress bar on a terminal and one line
    per epoch when the output is piped or logged (Keras' bar would write every redraw)."""
    if verbose is not None:
        return verbose
    return 1 if sys.stdout.isatty() else 2


_VERBOSE_HELP = (
    "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch (default: 1 on a "
    "terminal, 2 when the output is piped)"
)


def _preset_names(pretrained=False):
    from kerastp.registry import PRESETS, PRETRAINED

    return sorted(PRESETS) + (sorted(PRETRAINED) if pretrained else [])


def _print_json(payload):
    print(json.dumps(payload, indent=2, sort_keys=True, default=float))


def cmd_list(args):
    from kerastp.registry import get_preset, list_presets, preset_summary

    rows = [preset_summary(name) for name in list_presets(tiny=True if args.tiny else None)]
    if args.json:
        _print_json(rows)
        return 0

    def fmt(value):
        if value is None:
            return "-"
        for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
            if value >= factor or factor == 1e3:
                return f"{value / factor:.2f}{prefix}"
        return str(value)

    header = (
        f"{'preset':<22}{'model':<10}{'params':>10}{'paper':>9}"
        f"{'MACs (all)':>12}{'MACs (fvcore)':>15}{'paper FLOPs':>13}  description"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['preset']:<22}{row['model']:<10}{fmt(row['params']):>10}"
            f"{fmt(row['paper_params']):>9}{fmt(row['macs']):>12}"
            f"{fmt(row['fvcore_macs']):>15}{fmt(row['paper_flops']):>13}"
            f"  {get_preset(row['preset'])['description']}"
        )
        if row["paper_unused_params"]:
            print(
                f"{'':<32}(+{fmt(row['paper_unused_params'])} declared but unused in the "
                f"reference code = {fmt(row['params'] + row['paper_unused_params'])})"
            )
        if row["paper_zero_state_macs"]:
            total = row["fvcore_macs"] + row["paper_zero_state_macs"]
            print(
                f"{'':<32}(+{fmt(row['paper_zero_state_macs'])} MACs on the zero first state "
                f"in the reference code = {fmt(total)})"
            )
    print(
        "\nMACs (all): multiply-accumulates of every layer for one 10-frame forecast.\n"
        "MACs (fvcore): the papers' convention (fvcore on the PyTorch twin: counts norms, and\n"
        "skips depth-wise convs declared padding='same'); compare it with the paper's FLOPs."
    )
    import textwrap

    from kerastp.registry import PRETRAINED

    print("\nPretrained models (shipped; `kerastp predict --model NAME`; fine-tune with\n"
          "`kerastp train --preset NAME`):")  # fmt: skip
    for name, entry in PRETRAINED.items():
        text = f"{entry['description']} Card: {entry['card']}"
        print(textwrap.fill(text, 100, initial_indent=f"  {name:<20}", subsequent_indent=" " * 22,
                            break_on_hyphens=False))
    return 0


def _train_config(args):
    from kerastp.training import TrainConfig

    try:
        overrides = json.loads(args.override) if args.override else {}
    except json.JSONDecodeError as error:
        raise ValueError(
            f"--override must be a JSON object, got {args.override!r}: {error}"
        ) from error
    if not isinstance(overrides, dict):
        raise ValueError(f"--override must be a JSON object, got {args.override!r}")
    for key in ("mask_weight", "contrastive_weight"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    return TrainConfig(
        preset=args.preset,
        data=args.data,
        mnist_path=args.mnist_path,
        radar_path=args.radar_path,
        radar_resolution=args.radar_resolution,
        data_path=args.data_path,
        data_key=args.data_key,
        normalization=args.normalization,
        stride=args.stride,
        augment=args.augment,
        loss=args.loss,
        run_dir=args.run_dir,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        schedule=args.schedule,
        eval_sequences=args.eval_sequences,
        seed=args.seed,
        tensorboard=args.tensorboard,
        backup_every=args.backup_every,
        overrides=overrides,
        strategy=args.strategy,
        mixed_precision=args.mixed_precision,
        verbose=_fit_verbosity(args.verbose),
    )


def cmd_train(args):
    from kerastp.backend import require_keras, select_backend

    select_backend(args.backend)
    require_keras()  # a missing backend package is named before any work
    from kerastp.training import train

    result = train(_train_config(args))
    print(f"run directory: {result['run_dir']}  (fit took {result['seconds']:.1f} s)")
    if result["metrics"] is not None:
        _print_scores(result["metrics"])
    return 0


def _print_scores(result):
    """The model next to persistence, scores over the whole horizon; the JSON has the rest."""
    from kerastp.evaluation.evaluate import summary

    rows = summary(result)
    described = [f"data {result['data']}"]
    if "split" in result:
        described.append(f"{result['split']} split")
    if "events" in result:
        described.append(f"events {', '.join(result['events'])}")
    if "windows" in result:
        described.append(f"{result['windows']} windows")
    print("; ".join(described) + " (--json for every per-frame figure)")
    names = [name for name in ("model", "persistence") if rows.get(name) is not None]
    print(f"{'score':<16}" + "".join(f"{name:>14}" for name in names))
    for key in rows["model"]:
        cells = ""
        for name in names:
            value = rows[name].get(key)
            cells += f"{'n/a' if value is None else format(value, '.4f'):>14}"
        print(f"{key:<16}{cells}")


def _saved_models_load_on_tensorflow(command, paths):
    """A fresh process asked to run a SavedModel directory starts on TensorFlow, the one
    backend that loads it, whatever `KERAS_BACKEND` says (`use_tensorflow_for`)."""
    from kerastp.backend import use_tensorflow_for

    if any(path and Path(path, "saved_model.pb").is_file() for path in paths):
        use_tensorflow_for(command, reason="a SavedModel loads on TensorFlow only")


def cmd_evaluate(args):
    _saved_models_load_on_tensorflow("evaluate", [args.model])
    from kerastp.evaluation.evaluate import evaluate

    result = evaluate(
        args.model,
        data=args.data,
        num_sequences=args.num_sequences,
        mnist_path=args.mnist_path,
        batch_size=args.batch_size,
        persistence=True,
        radar_path=args.radar_path,
        radar_resolution=args.radar_resolution,
        data_path=args.data_path,
        data_key=args.data_key,
    )
    if args.json:
        _print_json(result)
    else:
        _print_scores(result)
    return 0


def cmd_export(args):
    from kerastp.backend import use_tensorflow_for

    use_tensorflow_for("export")
    from kerastp.export import export_artifacts

    written = export_artifacts(
        args.model,
        formats=args.format,
        name=args.name,
        saved_model_dir=args.saved_model_dir,
        tflite_dir=args.tflite_dir,
        quantize=args.quantize,
        data=args.data,
        mnist_path=args.mnist_path,
        max_metric_increase=args.max_metric_increase,
        float_ops=args.float_ops,
        float_layers=args.float_layers,
    )
    for kind, (path, sidecar) in written.items():
        parity = sidecar["parity"]
        line = f"{kind:<12} {path}  parity max abs error {parity['max_abs_error']:.2e}"
        if "mse_relative_increase" in parity:
            line += (
                f"; MSE on {parity['held_out_sequences']} held-out sequences "
                f"{parity['mse_keras']:.2f} -> {parity['mse_tflite']:.2f} "
                f"({100 * parity['mse_relative_increase']:+.2f}%)"
            )
        print(line)
    return 0


def cmd_bench(args):
    _saved_models_load_on_tensorflow("bench", args.model)
    from kerastp.bench import bench_path

    rows = []
    for target in args.model:
        for row in bench_path(
            target,
            batch_size=args.batch_size,
            threads=args.threads,
            warmup=args.warmup,
            runs=args.runs,
            max_seconds=args.max_seconds,
        ):
            rows.append({"model": target, **row})
    if args.json:
        _print_json(rows)
        return 0
    width = max(len("model"), *(len(str(row["model"])) for row in rows)) + 2
    print(
        f"{'model':<{width}}{'runtime':<14}{'threads':>8}{'batch':>6}{'median ms':>11}"
        f"{'p90 ms':>9}{'delegated':>11}  accuracy vs Keras"
    )
    fallbacks = {}
    for row in rows:
        threads = "-" if row["threads"] is None else row["threads"]
        delegated, accuracy = "-", ""
        if row.get("delegation"):
            info = row["delegation"]
            delegated = f"{info['delegated']}/{info['nodes']}"
            if info["fallback_ops"]:
                fallbacks[row["model"]] = info["fallback_ops"]
        if row.get("accuracy"):
            acc = row["accuracy"]
            if "mse_relative_increase" in acc:
                accuracy = (f"{acc['quantize']}: held-out MSE {acc['mse_keras']:.4g} -> "
                            f"{acc['mse_tflite']:.4g} ({100 * acc['mse_relative_increase']:+.1f}%)")
                kept = [*acc.get("float_ops", ()), *acc.get("float_layers", ())]
                if kept:
                    accuracy += f"; kept in float: {', '.join(kept)}"
                elif acc.get("fully_integer"):
                    accuracy += "; fully integer"
            elif "max_abs_error" in acc:
                accuracy = f"{acc['quantize']}: max abs error {acc['max_abs_error']:.1e}"
        print(
            f"{row['model']:<{width}}{row['runtime']:<14}{threads:>8}{row['batch_size']:>6}"
            f"{row['median_ms']:>11.2f}{row['p90_ms']:>9.2f}{delegated:>11}  {accuracy}"
        )
    for model, ops in fallbacks.items():
        listed = ", ".join(f"{op} x{count}" for op, count in ops.items())
        print(f"{model}: not delegated to XNNPACK (LiteRT's own kernels): {listed}")
    return 0


def cmd_predict(args):
    _saved_models_load_on_tensorflow("predict", [args.model])
    from kerastp.visualize import predict_to_pictures

    png, gif = predict_to_pictures(
        args.model,
        args.out,
        data=args.data,
        index=args.index,
        inputs=args.inputs,
        mnist_path=args.mnist_path,
    )
    print(f"wrote {png}" + ("" if gif is None else f" and {gif}"))
    return 0


def _epochs_trained(summary):
    """The epochs a demo trained: "10", or "7 of 10" when it stopped early to end on time."""
    trained = summary.get("epochs_trained", summary["epochs"])
    return f"{trained}" if trained == summary["epochs"] else f"{trained} of {summary['epochs']}"


def cmd_demo(args):
    started = time.perf_counter()  # the budget includes loading TensorFlow
    from kerastp.backend import use_tensorflow_for

    use_tensorflow_for("demo")
    from kerastp.demo import over_budget_note, run_demo

    summary = run_demo(
        run_dir=args.run_dir,
        preset=args.preset,
        data=args.data,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        eval_sequences=args.eval_sequences,
        mnist_path=args.mnist_path,
        seed=args.seed,
        verbose=_fit_verbosity(args.verbose),
        minutes=args.minutes,
        started=started,
    )
    metrics = summary["metrics"]
    last = summary["baselines"]["repeat_last_frame"]
    print(
        f"\n{summary['preset']} on {summary['data']} Moving MNIST "
        f"({len(summary['artifacts'])} artifacts verified):\n"
        f"  test MSE {metrics['mse']:.2f}  MAE {metrics['mae']:.2f}  SSIM {metrics['ssim']:.4f}  "
        f"PSNR {metrics['psnr']:.2f}   (repeat-last-frame MSE {last['mse']:.2f})\n"
        f"  {_epochs_trained(summary)} epochs x {summary['steps_per_epoch']} steps: fit "
        f"{summary['timings']['fit_s']:.0f} s, export {summary['timings']['export_s']:.0f} s, "
        f"demo {summary['timings']['total_s']:.0f} s"
        + (
            ""
            if summary["budget"] is None
            else f" (budget {summary['budget']['minutes']:g} min, measured "
            f"{summary['budget']['measured']['steps_per_second']:.1f} steps/s)"
        )
    )
    note = over_budget_note(summary)
    if note:
        print(f"  {note}")
    for kind, path in summary["artifacts"].items():
        print(f"  {kind:<12} {path}")
    print(f"  pictures     {', '.join(summary['pictures'])}")
    if summary.get("pretrained"):
        scores = summary["pretrained"]
        count = next(iter(scores.values()))["n_sequences"]
        print(
            f"On the {count} MNIST test sequences shipped with the pretrained model "
            "(comparison.png):"
        )
        for name, row in scores.items():
            print(f"  {name:<14} MSE {row['mse']:7.2f}  SSIM {row['ssim']:.4f}")
    return 0


def _add_data_args(
    parser, default=None, sources=options.DATA_SOURCES, windows=True, default_help=None
):
    recorded = " (default: the data the model was trained on)" if default is None else ""
    recorded = recorded if default_help is None else f" (default: {default_help})"
    parser.add_argument(
        "--data",
        choices=sources,
        default=default,
        help="data source: Moving MNIST from built-in procedural digits (no file, no network) "
        "or real MNIST digits"
        + ("; the radar nowcasting events (6 in, 12 out); or your own arrays" if windows else "")
        + recorded,
    )
    parser.add_argument(
        "--mnist-path",
        default=None,
        help="mnist.npz or idx files (else $KERASTP_MNIST, ~/.keras/datasets, download)",
    )
    if windows:
        parser.add_argument(
            "--radar-path",
            default=None,
            help="radar data folder (else $KERASTP_RADAR, ../shared/data/radar)",
        )
        parser.add_argument(
            "--radar-resolution", type=int, choices=options.RADAR_RESOLUTIONS, default=None
        )
        parser.add_argument(
            "--data-path",
            default=None,
            help="--data arrays: .npy/.npz/.h5/.zarr/.nc of (N, T, H, W, C) or (T, H, W, C)",
        )
        parser.add_argument("--data-key", default=None, help="array name inside --data-path")


def _add_array_training_args(parser):
    parser.add_argument(
        "--normalization",
        choices=options.NORMALIZATIONS,
        default="minmax",
        help="--data arrays: fitted on the training split only",
    )
    parser.add_argument(
        "--stride", type=int, default=1, help="window stride (--data arrays; radar training)"
    )
    parser.add_argument(
        "--augment",
        choices=options.AUGMENTATIONS,
        default="none",
        help="--data radar: rotate / flip (/ shift) each training window, inputs and targets",
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kerastp", description="Spatio-temporal forecasting with Keras 3 / TensorFlow."
    )
    from kerastp import __version__

    parser.add_argument("--version", action="version", version=f"kerastp {__version__}")
    parser.add_argument(
        "-v",
        "--verbose-logs",
        dest="diagnostics",
        action="store_true",
        help="show TensorFlow's log lines and library warnings (hidden by default; "
        "also KERASTP_VERBOSE=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="presets with parameters and FLOPs")
    p.add_argument("--tiny", action="store_true", help="only the tiny presets")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", help="train a preset with model.fit (resumable)")
    p.add_argument(
        "--preset",
        default="stlight_tiny",
        choices=_preset_names(pretrained=True),
        help="an architecture preset, or a pretrained model (mmnist, radar) to fine-tune "
        "from its shipped weights",
    )
    _add_data_args(p, default_help="procedural; for a pretrained model, its own data")
    _add_array_training_args(p)
    p.add_argument("--run-dir", default=None, help="default runs/<preset>; rerun to resume")
    p.add_argument(
        "--backend",
        choices=options.BACKENDS,
        default=None,
        help="Keras backend to train on (default: $KERAS_BACKEND, else tensorflow); export "
        "a JAX or PyTorch run with `kerastp export`, which runs on TensorFlow",
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None, help="peak learning rate")
    p.add_argument("--schedule", choices=options.SCHEDULES, default=options.SCHEDULES[0])
    p.add_argument(
        "--loss",
        choices=options.LOSSES,
        default="auto",
        help="auto: the model's own; intensity / intensity_csi: rain-weighted (radar scale)",
    )
    p.add_argument("--eval-sequences", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tensorboard", action="store_true")
    p.add_argument("--backup-every", type=int, default=None, help="also back up every N steps")
    p.add_argument(
        "--strategy",
        choices=[name for name in options.STRATEGIES if name is not None],
        default=None,
        help="tf.distribute: all local GPUs (mirrored) or the TF_CONFIG cluster (multi_worker); "
        "--batch-size is the global batch",
    )
    p.add_argument(
        "--mixed-precision",
        choices=options.MIXED_PRECISIONS,
        default=None,
        help="compute in low precision; variables, losses, forecasts and artifacts stay float32",
    )
    p.add_argument(
        "--override", default=None, help="model arguments as JSON, e.g. '{\"depth\": 8}'"
    )
    p.add_argument(
        "--mask-weight", type=float, default=None, help="USTEP masked-prediction loss weight"
    )
    p.add_argument(
        "--contrastive-weight", type=float, default=None, help="USTEP InfoNCE loss weight"
    )
    p.add_argument("--verbose", type=int, default=None, choices=(0, 1, 2), help=_VERBOSE_HELP)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="scores next to persistence: OpenSTL metrics on the standard test set, "
        "nowcasting scores on radar, errors on your arrays",
    )
    p.add_argument(
        "--model", required=True, help=".keras file, run directory, SavedModel dir or .tflite"
    )
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="every score, per frame / lead time")
    p.add_argument("--num-sequences", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="verified .keras / SavedModel / TFLite export")
    p.add_argument("--model", required=True, help=".keras file or run directory")
    p.add_argument(
        "--format",
        nargs="+",
        choices=options.EXPORT_FORMATS,
        default=list(options.EXPORT_FORMATS),
    )
    p.add_argument("--name", default=None, help="artifact name (default: the preset)")
    p.add_argument(
        "--quantize",
        choices=options.QUANTIZATIONS,
        default="none",
        help="TFLite quantisation (int8: calibrated on training sequences of --data)",
    )
    p.add_argument(
        "--max-metric-increase",
        type=float,
        default=options.MAX_METRIC_INCREASE,
        help="refuse dynamic/int8 TFLite whose MSE on held-out sequences is this much higher "
        "(relative) than the Keras model's (default 0.10)",
    )
    p.add_argument(
        "--float-ops",
        nargs="*",
        default=None,
        metavar="OP",
        help="int8: TFLite operator types kept in float (e.g. GELU MUL; default: the "
        "model's measured choice; the option alone, with no OP, for a fully integer model)",
    )
    p.add_argument(
        "--float-layers",
        nargs="*",
        default=None,
        metavar="LAYER",
        help="int8: the model's layers kept in float (e.g. encoder_0; default: the model's)",
    )
    # None: calibrate and judge on the data the run was trained on (radar, arrays, digits).
    _add_data_args(p, windows=False)
    p.add_argument("--saved-model-dir", default="saved_models")
    p.add_argument("--tflite-dir", default="tflite")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="forecast latency (median of timed runs after warm-up)")
    p.add_argument(
        "model",
        nargs="+",
        help="preset name, .keras file, run directory, SavedModel directory or .tflite file",
    )
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="LiteRT threads")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--max-seconds", type=float, default=30.0, help="timed seconds per runtime")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("predict", help="forecast one sequence: PNG strip + animated GIF")
    p.add_argument("--model", required=True, help=".keras, .tflite, SavedModel dir or run dir")
    _add_data_args(p, windows=False)
    p.add_argument(
        "--index", type=int, default=0, help="sequence of the standard test set (or window)"
    )
    p.add_argument("--inputs", default=None, help=".npy of (T_in, H, W, C) frames instead")
    p.add_argument("--out", default="forecast.png")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="the main job: train, evaluate, export, draw")
    p.add_argument("--preset", default="stlight_tiny", choices=_preset_names())
    _add_data_args(p, default="procedural", sources=options.MOVING_MNIST_SOURCES, windows=False)
    p.add_argument("--run-dir", default="runs/demo")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-time budget of the whole demo (default 3.5): the training steps are sized "
        "to the step rate measured first, so slower machines train fewer steps",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: sized to --minutes")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="default: sized to --minutes")
    p.add_argument("--eval-sequences", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=None, choices=(0, 1, 2), help=_VERBOSE_HELP)
    p.set_defaults(func=cmd_demo)
    return parser


#: A mistake in the command: a wrong value, a missing, unreadable or misplaced file, a missing
#: optional library, an export that failed its check. Reported like argparse's usage errors.
_USAGE_ERRORS = (
    ValueError,
    ImportError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
    RuntimeError,
)


def main(argv=None):
    """Runs one `kerastp` command; returns its exit status.

    0 on success. A mistake in the arguments exits with status 2 and one line on stderr,
    `kerastp <command>: error: <message>` (argparse's own errors add the usage line before
    it); every message names the argument and the value. Any other I/O failure (a full
    disk, ...) exits with status 1, the same way. Neither prints a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _set_verbosity(args.diagnostics)
    try:
        return args.func(args)
    except _USAGE_ERRORS as error:
        print(f"kerastp {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"kerastp {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
