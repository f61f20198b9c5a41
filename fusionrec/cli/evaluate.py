"""``fusionrec evaluate MODEL FOLDER``: score a trained model on labelled photos."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..datasets import load_image_folder
from ..evaluation import EvaluationReport, evaluate
from . import model_file
from .options import add_allow_pickle_option, add_verbose_option, show_progress


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the console script."""
    parser = commands.add_parser(
        "evaluate",
        help="score a trained model on a folder of labelled photos",
        description="Predict every photo in FOLDER (one sub-folder per product, as for"
        " 'fusionrec train') with MODEL and print accuracy, macro and per-product precision,"
        " recall and F1. With --report, also write report.json and confusion_matrix.png."
        " A model trained with --false-accept-rate has a last row for the photos it rejected;"
        " a sub-folder of a product it does not know is right when rejected.",
        epilog="example: fusionrec evaluate model.fusionrec test-photos/ --report report/",
    )
    parser.add_argument("model", metavar="MODEL", help="model file from 'fusionrec train'")
    parser.add_argument("folder", metavar="FOLDER", help="folder of product sub-folders")
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="write report.json and confusion_matrix.png into DIR (created if needed)",
    )
    add_allow_pickle_option(parser)
    add_verbose_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Predict the folder's photos and print how well the model did."""
    model, _ = model_file.load(args.model, allow_pickle=args.allow_pickle)
    photos = load_image_folder(args.folder)
    truth = np.asarray(photos.target_names, dtype=object)[photos.target]
    model.set_params(on_error="raise")
    show_progress(model, args.verbose)
    unknown = sorted(set(photos.target_names) - set(model.classes_))
    rejects = getattr(model, "known_threshold_", None) is not None
    unknown_label = model.unknown_label_ if rejects else None
    if rejects:
        truth[np.isin(truth, unknown)] = unknown_label
    predicted = model.predict(photos.data)
    report = evaluate(truth, predicted, unknown_label=unknown_label, output_dir=args.report)
    print(f"{report.n_photos} photos of {len(photos.target_names)} products in {args.folder}")
    if unknown and rejects:
        print(
            f"not in the model, so right only when rejected (row {unknown_label!r}):"
            f" {', '.join(unknown)}"
        )
    elif unknown:
        print(f"not in the model, so every photo of it is wrong: {', '.join(unknown)}")
    print(format_report(report))
    if args.report is not None:
        folder = Path(args.report)
        print(f"wrote {folder / 'report.json'} and {folder / 'confusion_matrix.png'}")
    return 0


def format_report(report: EvaluationReport) -> str:
    """The overall scores, then one line per product."""
    width = max(len("product"), *(len(str(label)) for label in report.labels))
    lines = [
        f"accuracy         {report.accuracy:.3f}",
        f"macro precision  {report.macro_precision:.3f}",
        f"macro recall     {report.macro_recall:.3f}",
        f"macro F1         {report.macro_f1:.3f}",
        *_rejected_line(report),
        "",
        f"{'product':{width}}  precision  recall     F1  photos",
    ]
    for label, scores in report.per_class.items():
        lines.append(
            f"{label!s:{width}}  {scores['precision']:9.3f}  {scores['recall']:6.3f}"
            f"  {scores['f1']:5.3f}  {scores['support']:6d}"
        )
    return "\n".join(lines)


def _rejected_line(report: EvaluationReport) -> list[str]:
    """How many photos the model rejected, when it can reject."""
    if report.unknown_label is None:
        return []
    return [f"rejected         {report.n_rejected} photos (as {report.unknown_label!r})"]
