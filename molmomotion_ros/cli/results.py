"""``molmomotion results``: results JSON files of ``sim-eval`` and ``launch sim_eval*`` side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import UsageError


def add_parser(commands) -> None:
    """Add ``results`` to the ``molmomotion`` subcommands."""
    results = commands.add_parser(
        "results", help="print results JSON files (sim-eval, launch sim_eval*) side by side",
        description="Per family: successes/episodes, rate and 95%% interval of each results file.")
    results.add_argument("files", nargs="+", type=Path, metavar="FILE", help="results JSON")
    results.add_argument("--labels", type=lambda t: [x.strip() for x in t.split(",")], metavar="A,B",
                         help="column labels (default: each run's agent)")
    results.set_defaults(handler=_results)


def _results(args: argparse.Namespace) -> int:
    from molmomotion_sim.evaluation import compare_table

    documents = []
    for path in args.files:
        try:
            document = json.loads(path.read_text())
            document["summary"]  # noqa: B018  (a results file has one)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{path} is not a readable results file ({type(err).__name__}: {err})") from None
        documents.append(document)
    if args.labels and len(args.labels) != len(documents):
        raise UsageError(f"--labels names {len(args.labels)} columns for {len(documents)} files")
    print(compare_table(documents, args.labels))
    return 0
