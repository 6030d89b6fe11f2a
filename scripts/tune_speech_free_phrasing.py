"""Choose the speech recogniser's free-phrasing rule (molmomotion_ros/speech/recognizer.py: ``free_min_confidence``
and ``free_min_off_template_words``) on development material only: the parser's development rewordings
(test/language_dev.yaml) and the package's own template sentences of validation-split tasks, spoken by the
development voices (en-us, en-us+f3), clean and with white noise at 20 dB SNR. Held-out phrasings and held-out
voices are never decoded here.

    .venv/bin/python scripts/tune_speech_free_phrasing.py [--rewordings 24] [--own 12] [--out FILE]

Each sentence is decoded once by each path (template grammar, wide grammar); every rule of the grid is then
applied to the same decodes. Cost: a wrong command 3 (a motion nobody asked for), a refusal 1 (say it again).
Prints the grid's best rules and writes every decode to ``bench/results/speech-free-phrasing-dev.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT / "test" / "language_dev.yaml"
DEV_VOICES = ("en-us", "en-us+f3")
SNR_DB = 20.0
FIRST_VALIDATION_SEED = 100_000
WRONG_COST, REFUSED_COST = 3, 1


def dev_rewordings(count: int) -> list[dict]:
    """``count`` development rewordings, families in turn, that the parser reads (a refusal here is no speech test)."""
    from molmomotion_ros.language import Refusal, canonical, parse_instruction

    by_family: dict[str, list[dict]] = {}
    for row in yaml.safe_load(DEV_SET.read_text())["instructions"]:
        parsed = parse_instruction(row["text"], fallback=False)
        if not isinstance(parsed, Refusal) and parsed.intent == row["intent"]:
            by_family.setdefault(row["intent"], []).append({"family": row["intent"], "text": row["text"],
                                                            "truth": canonical(parsed), "set": "rewording"})
    rows = [r for group in itertools.zip_longest(*by_family.values()) for r in group if r is not None]
    return rows[:count]


def own_sentences(count: int) -> list[dict]:
    """Template sentences of ``count`` validation-split tasks (families in turn)."""
    from molmomotion_ros.language import canonical, parse_instruction
    from molmomotion_sim.tasks import TASKS
    from molmomotion_sim.world import World

    rows = []
    with World() as world:
        tasks = {family: cls(world) for family, cls in TASKS.items()}
        families = list(tasks)
        for i in range(count):
            family = families[i % len(families)]
            tasks[family].reset(FIRST_VALIDATION_SEED + i)
            text = tasks[family].instruction
            rows.append({"family": family, "text": text, "truth": canonical(parse_instruction(text)), "set": "own"})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rewordings", type=int, default=24, help="development rewordings (default: 24)")
    parser.add_argument("--own", type=int, default=12, help="own template sentences, validation seeds (default: 12)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/speech-free-phrasing-dev.json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_speech_language import with_noise
    from tqdm import tqdm

    from molmomotion_ros.language import Refusal, canonical, parse_instruction
    from molmomotion_ros.speech import Recognizer, RecognizerConfig, read_wav
    from molmomotion_ros.speech.recognizer import choose_reading
    from molmomotion_ros.speech.synth import synthesize

    recognizer = Recognizer(RecognizerConfig())  # the template path alone; wide readings come separately
    sentences = dev_rewordings(args.rewordings) + own_sentences(args.own)
    decodes = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(s, v) for s in sentences for v in DEV_VOICES]
        for k, (sentence, voice) in enumerate(tqdm(jobs, desc="dev speech", unit="sentence")):
            clean = read_wav(synthesize(sentence["text"], Path(tmp) / f"{k}.wav", voice=voice))
            for condition in ("clean", f"{SNR_DB:g} dB SNR"):
                pcm = clean if condition == "clean" else with_noise(clean, SNR_DB, seed=k)
                decodes.append({**sentence, "voice": voice, "condition": condition,
                                "template": recognizer.recognize_pcm(pcm), "wide": recognizer.wide_reading(pcm)})

    def command(result) -> str | None:
        if not result.recognised:
            return None
        parsed = parse_instruction(result.text, fallback=False)
        return None if isinstance(parsed, Refusal) else canonical(parsed)

    grid = []
    for min_confidence, min_off in itertools.product(np.round(np.arange(0.0, 0.81, 0.05), 2), range(0, 5)):
        config = dataclasses.replace(recognizer.config, free_phrasing=True, free_min_confidence=float(min_confidence),
                                     free_min_off_template_words=min_off)
        outcomes = {"right": 0, "wrong": 0, "refused": 0}
        for d in decodes:
            got = command(choose_reading(d["template"], d["wide"], config, recognizer.vocabulary))
            outcomes["right" if got == d["truth"] else "refused" if got is None else "wrong"] += 1
        cost = WRONG_COST * outcomes["wrong"] + REFUSED_COST * outcomes["refused"]
        grid.append({"free_min_confidence": float(min_confidence), "free_min_off_template_words": min_off,
                     "cost": cost, **outcomes})
    template_only = {k: 0 for k in ("right", "wrong", "refused")}
    for d in decodes:
        got = command(d["template"])
        template_only["right" if got == d["truth"] else "refused" if got is None else "wrong"] += 1
    # Least cost; ties to the more demanding rule (fewer free readings taken).
    best = sorted(grid, key=lambda g: (g["cost"], -g["free_min_confidence"], -g["free_min_off_template_words"]))
    print(f"{len(decodes)} decodes ({len(sentences)} sentences x {len(DEV_VOICES)} voices x clean/{SNR_DB:g} dB)")
    print(f"template grammar alone: {template_only}")
    print(f"{'min conf':>8} {'min off':>7} {'cost':>5} {'right':>6} {'wrong':>6} {'refused':>7}")
    for g in best[:10]:
        print(f"{g['free_min_confidence']:>8.2f} {g['free_min_off_template_words']:>7} {g['cost']:>5} {g['right']:>6} "
              f"{g['wrong']:>6} {g['refused']:>7}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join(["scripts/tune_speech_free_phrasing.py", *(argv if argv is not None else sys.argv[1:])]),
        "template_only": template_only, "grid": grid, "best": best[0],
        "decodes": [{**{k: v for k, v in d.items() if k not in ("template", "wide")},
                     "template": {"status": d["template"].status.value, "text": d["template"].text,
                                  "confidence": d["template"].confidence},
                     "wide": {"text": d["wide"].text, "confidence": d["wide"].confidence,
                              "off_template_words": d["wide"].off_template_words, "command": d["wide"].command,
                              "refusal": d["wide"].refusal}} for d in decodes],
    }, indent=1))
    print(f"decodes: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
