"""How well the instruction parser reads a suite's instructions: per family, read right (the family and every field
the task filled), read wrong, or refused (by kind). No motion is run: the harness only draws each scene and its
instruction, so this isolates reading from forecasting and planning (and costs ~0.2 s an episode).

    python bench/bench_instruction_reading.py --suite heldout3_language --episodes 100 \
        [--reader none|prototypes|learned]

Held-out sentences are never printed (counts only), so a held-out set stays unread by whoever runs this.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from molmomotion_ros.argtypes import positive_int
from molmomotion_ros.language import Refusal, parse_instruction
from molmomotion_ros.vocabulary import default_vocabulary
from molmomotion_sim.suites import SuiteError, load_suite
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import World


def reader_choice(name: str):
    """The ``fallback`` argument of parse_instruction for a reader name."""
    if name == "none":
        return False
    if name == "prototypes":
        from molmomotion_ros.language import VerbClassifier

        return VerbClassifier()
    from molmomotion_ros.instruction_reader import InstructionReader

    return InstructionReader.load()


def read_suite(suite_name: str, episodes: int, reader: str, progress: bool = True) -> dict:
    vocabulary = default_vocabulary()
    suite = load_suite(suite_name).select(episodes_per_family=episodes)
    fallback = reader_choice(reader)
    world = World()
    counts: dict[str, Counter] = {}
    sources: dict[str, Counter] = {}
    seconds = []
    for spec in tqdm(suite.episodes(), desc=f"{suite_name} ({reader})", disable=not progress):
        task = TASKS[spec.family](world, spec.options)
        task.reset(spec.seed)
        start = time.perf_counter()
        parsed = parse_instruction(task.instruction, vocabulary, fallback=fallback)
        seconds.append(time.perf_counter() - start)
        family = counts.setdefault(spec.family, Counter())
        if isinstance(parsed, Refusal):
            family[f"refused {parsed.kind}"] += 1
            continue
        right = parsed.intent == spec.family and parsed.fields(vocabulary) == task.phrase_fields()
        family["right" if right else f"wrong ({'family' if parsed.intent != spec.family else 'fields'})"] += 1
        sources.setdefault(spec.family, Counter())[parsed.verb_source] += 1
    world.close()
    total = sum((c for c in counts.values()), Counter())
    return {"suite": suite_name, "episodes_per_family": episodes, "reader": reader,
            "per_family": {f: dict(c) for f, c in counts.items()}, "total": dict(total),
            "verb_source": {f: dict(c) for f, c in sources.items()},
            "parse_ms": {"median": 1e3 * float(np.median(seconds)), "p95": 1e3 * float(np.percentile(seconds, 95))}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="main", help="suite name or file (default: main)")
    parser.add_argument("--episodes", type=positive_int, default=100, help="episodes per family (default: 100)")
    parser.add_argument("--reader", choices=["none", "prototypes", "learned"], default="learned",
                        help="what reads verbs the lexicon does not know (default: learned)")
    parser.add_argument("--out", type=Path, help="also write the counts to this JSON file")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = read_suite(args.suite, args.episodes, args.reader, progress=not args.no_progress)
    except SuiteError as err:
        parser.error(str(err))
    for family, counts in result["per_family"].items():
        n = sum(counts.values())
        rest = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "right")
        print(f"{family:20s} right {counts.get('right', 0):3d}/{n}  {rest}")
    n = sum(result["total"].values())
    print(f"{'all':20s} right {result['total'].get('right', 0):3d}/{n}   parse {result['parse_ms']['median']:.2f} ms "
          f"median, {result['parse_ms']['p95']:.2f} ms p95 (first use loads the reader)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
