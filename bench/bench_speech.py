"""How many spoken task commands does the speech recogniser decode exactly?

Draws ``--commands`` instructions from seeded harness tasks (families in turn, test-split seeds
110000, 110001, ...), speaks each with every ``--voices`` espeak-ng voice at ``--rate-wpm``
(espeak-ng → sox → 16 kHz mono WAV), and decodes the WAV with
``molmomotion_ros.speech.Recognizer`` (grammar from ``config/vocabulary.yaml``). Per voice it
reports exact matches, wrong instructions (recognised but different: the dangerous case),
refusals, and the mean decode time (warm, one thread, padding included) with the real-time factor.
Bar (issue 5): at least 8 of 10 exact for each voice.

Usage::

    .venv/bin/python bench/bench_speech.py
    .venv/bin/python bench/bench_speech.py --commands 40 --voices en-us,en-us+f3,en-gb \
        --out bench/results/speech-40.json

Writes ``bench/results/speech.json`` (summary per voice, every command, machine, versions).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

BAR_EXACT_OF_10 = 8
FIRST_SEED = 110_000  # test split (sim/seeds.py)


def task_instructions(count: int) -> list[dict]:
    """``count`` (family, seed, instruction, phrase_fields) rows: families in turn, consecutive test-split seeds."""
    from molmomotion_sim.tasks import TASKS
    from molmomotion_sim.world import World

    rows = []
    with World() as world:
        tasks = {family: cls(world) for family, cls in TASKS.items()}
        families = list(tasks)
        for i in range(count):
            family, seed = families[i % len(families)], FIRST_SEED + i
            tasks[family].reset(seed)
            rows.append({"family": family, "seed": seed, "instruction": tasks[family].instruction,
                         "phrase_fields": tasks[family].phrase_fields()})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=10, help="task instructions to speak (default: 10)")
    parser.add_argument("--voices", default="en-us,en-us+f3", help="comma-separated espeak-ng voices "
                        "(default: en-us,en-us+f3)")
    parser.add_argument("--rate-wpm", type=int, default=140, help="espeak-ng speaking rate, words/min (default: 140)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/speech.json"),
                        help="benchmark JSON (default: bench/results/speech.json)")
    args = parser.parse_args(argv)

    from molmomotion_ros.speech import Recognizer, RecognizerConfig
    from molmomotion_ros.speech.synth import synthesize

    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    commands = task_instructions(args.commands)
    config = RecognizerConfig()
    recognizer = Recognizer(config)
    rows, summary = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        recognizer.recognize_wav(synthesize(commands[0]["instruction"], Path(tmp) / "warm.wav"))  # warm-up
        for voice in voices:
            for i, command in enumerate(commands):
                wav = synthesize(command["instruction"], Path(tmp) / f"{i}.wav", voice=voice, rate_wpm=args.rate_wpm)
                result = recognizer.recognize_wav(wav)
                rows.append({**command, "voice": voice, "exact": result.text == command["instruction"],
                             "status": result.status.value, "text": result.text, "hypothesis": result.hypothesis,
                             "confidence": round(result.confidence, 4), "reason": result.reason,
                             "audio_s": round(result.audio_s, 3), "decode_s": round(result.decode_s, 4)})
            mine = [r for r in rows if r["voice"] == voice]
            decode_s = np.array([r["decode_s"] for r in mine])
            audio_s = np.array([r["audio_s"] for r in mine])
            summary[voice] = {
                "commands": len(mine),
                "exact": sum(r["exact"] for r in mine),
                "wrong_instruction": sum(r["status"] == "recognised" and not r["exact"] for r in mine),
                "not_recognised": sum(r["status"] != "recognised" for r in mine),
                "mean_decode_ms": round(1000 * float(decode_s.mean()), 1),
                "real_time_factor": round(float(decode_s.sum() / audio_s.sum()), 3),
            }
    summary_all = {"exact": sum(s["exact"] for s in summary.values()), "commands": len(rows),
                   "mean_decode_ms": round(1000 * float(np.mean([r["decode_s"] for r in rows])), 1)}
    bar_met = all(s["exact"] >= BAR_EXACT_OF_10 * s["commands"] / 10 for s in summary.values())

    print(f"{'voice':<12} {'exact':>9} {'wrong':>6} {'refused':>8} {'decode ms':>10} {'RTF':>6}")
    for voice, s in summary.items():
        print(f"{voice:<12} {s['exact']:>4} / {s['commands']:<2} {s['wrong_instruction']:>6} {s['not_recognised']:>8} "
              f"{s['mean_decode_ms']:>10.1f} {s['real_time_factor']:>6.3f}")
    print(f"all: {summary_all['exact']} / {summary_all['commands']} exact, "
          f"mean decode {summary_all['mean_decode_ms']} ms; "
          f"bar (>= {BAR_EXACT_OF_10}/10 per voice) {'met' if bar_met else 'NOT met'}")
    for r in rows:
        if not r["exact"]:
            print(f"  {r['voice']}: {r['instruction']!r} -> {r['status']}: {r['text'] or r['reason']}")

    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rate_wpm": args.rate_wpm,
        "bar_exact_of_10": BAR_EXACT_OF_10,
        "bar_met": bar_met,
        "summary": summary,
        "all": summary_all,
        "recognizer_config": asdict(config),
        "grammar_sentences": recognizer.grammar.size(),
        "rows": rows,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "pocketsphinx": importlib.metadata.version("pocketsphinx")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
