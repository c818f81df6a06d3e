"""`ctax eval`: the evaluation contract, run on a throwaway service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ctax.cli.common import fail
from ctax.cli.data import report_bad_lines
from ctax.errors import CtaxError

SHOWN = ("top1", "top5", "tier1_accuracy", "novelty_auroc", "novelty_precision", "novelty_recall",
         "wrong_label_auroc", "wrong_label_precision", "wrong_label_recall", "known_flagged_new_rate", "n_train",
         "n_test", "seconds")
OCR_SHOWN = ("top1", "novelty_auroc", "known_flagged_new_rate", "wrong_label_auroc", "n", "n_novel")


def evaluate(taxonomy: Annotated[Path, typer.Option(help="IAB TSV or one path per line")],
             train: Annotated[Path, typer.Option(help="labelled JSONL to train on")],
             test: Annotated[Path, typer.Option(help="labelled JSONL to evaluate on")],
             json_out: Annotated[Path, typer.Option("--json", help="where to write the metrics")],
             holdout_labels: Annotated[int, typer.Option(help="leaf labels hidden from taxonomy and training")] = 0,
             wrong_label_rate: Annotated[float, typer.Option(help="share of test rows with a wrong asserted label")]
             = 0.2,
             seed: int = 13,
             no_train: Annotated[bool, typer.Option(help="evaluate the pretrained encoders")] = False,
             epochs: Annotated[int | None, typer.Option(help="text-tower epochs")] = None,
             work_dir: Annotated[Path | None, typer.Option(help="keep the throwaway service here")] = None,
             skip_invalid: Annotated[bool, typer.Option(help="evaluate without the bad lines of either file, listing "
                                                            "them; without it any bad line stops the run")] = False,
             report: Annotated[Path | None, typer.Option(help="write an HTML page with the evaluation's pictures "
                                                              "(index.html and PNGs) in this folder")] = None,
             ocr_test: Annotated[Path | None, typer.Option(help="OCR texts of ad images, one {\"id\", \"text\", "
                                                                "\"label\"} per line (pitt_ads_ocr_dev.jsonl): "
                                                                "labelled as image ads read by OCR and reported "
                                                                "apart as the `ocr` block")] = None,
             ) -> None:
    """Run the evaluation contract: train (unless --no-train), then label every test row as the service would."""
    # Imported here: the evaluation loads the towers and the index, which no other command needs.
    from ctax.dataset.importing import BadLine
    from ctax.evaluation.run import EvalOptions, InvalidEvalLines, run_eval

    if not 0 <= wrong_label_rate <= 1:
        fail(ValueError("--wrong-label-rate must be between 0 and 1"))
    if report is not None and report.exists() and not report.is_dir():
        fail(ValueError(f"--report {report} is a file, not a folder"))
    try:
        result = run_eval(EvalOptions(taxonomy, train, test, holdout_labels, wrong_label_rate, seed, no_train, epochs,
                                      work_dir, skip_invalid, ocr_test=ocr_test))
    except InvalidEvalLines as exc:
        for name, line in exc.bad:
            report_bad_lines(train if name == "train" else test, [line])
        fail(exc)
    except (ValueError, CtaxError) as exc:  # a work folder in use, too few rows to hold labels out, a bad file
        fail(exc)
    for name, lines in result.get("invalid_lines", {}).items():
        report_bad_lines(train if name == "train" else test, [BadLine(**line) for line in lines], skipped=True)
    json_out.write_text(json.dumps(result, indent=2, default=str))
    if report is not None:
        from ctax.evaluation.report import write_report

        Console(stderr=True).print(f"report: {write_report(result, report)}")
    table = Table("metric", "value")
    for key in SHOWN:
        value = result.get(key)
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    for key in OCR_SHOWN if "ocr" in result else ():
        value = result["ocr"].get(key)
        table.add_row(f"ocr {key}", f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
