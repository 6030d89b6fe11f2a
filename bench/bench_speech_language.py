"""Spoken instructions in words the templates never used: command accuracy and word error of the recogniser.

Draws ``--commands`` test-split episodes (families in turn, seeds 110000, 110001, ...) from the harness and
phrases each with the package's own templates and with the held-out phrasing sets (``config/phrasings/heldout.yaml``,
seen while the parser grew; ``heldout2.yaml``, written blind to it; neither used for the speech path's choices).
Each sentence is spoken by every ``--voices`` espeak-ng voice (default: two voices no speech development used;
development used en-us and en-us+f3), clean and with white noise mixed at ``--snr-db`` (seeded), and decoded by
``Recognizer`` with free phrasing on. The template path's verdict comes out of the same run: "templates only"
counts the right answers that came from the template grammar.

A command is **right** when what the recogniser returns parses to the same task and arguments as the sentence
spoken (``language.parse_instruction``); **wrong** when it returns a different command (the dangerous case);
otherwise refused. WER is the word error rate of the words heard against the words spoken.

Usage::

    .venv/bin/python bench/bench_speech_language.py                       # 40 commands, ~25 min on 2 cores
    .venv/bin/python bench/bench_speech_language.py --commands 8 --voices en-us --out /tmp/s.json

Writes ``bench/results/speech-language.json`` (every decode, summary per set × voice × noise, versions).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HELD_OUT_VOICES = "en-gb-x-rp,en-us-nyc"  # never used while developing the speech path (en-us, en-us+f3 were)


def episodes(count: int, sets: list[str]) -> list[dict]:
    """``count`` test-split episodes, families in turn, each phrased by every set ("own": the templates)."""
    from bench_speech import task_instructions  # this folder is on sys.path when a bench script runs

    from molmomotion_ros.phrasings import load_phrasing_set

    phrasings = {name: load_phrasing_set(name) for name in sets if name != "own"}
    return [{"family": row["family"], "seed": row["seed"], "own": row["instruction"],
             **{name: ps.phrase(row["family"], row["seed"], row["phrase_fields"]) for name, ps in phrasings.items()}}
            for row in task_instructions(count)]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length) after the parser's normalisation."""
    from molmomotion_ros.language import normalise

    ref, hyp = normalise(reference), normalise(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)


def with_noise(pcm: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` below the speech power (frames above -50 dBFS count as speech)."""
    from molmomotion_ros.speech.audio import to_int16

    x = pcm.astype(float)
    frames = x[: x.size // 320 * 320].reshape(-1, 320)
    loud = frames[(frames**2).mean(axis=1) > (32768 * 10 ** (-50 / 20)) ** 2]
    power = float((loud**2).mean()) if loud.size else float((x**2).mean())
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), x.size)
    return to_int16(x + noise)


def command(text: str):
    from molmomotion_ros.language import Refusal, canonical, parse_instruction

    parsed = parse_instruction(text, fallback=False)
    return None if isinstance(parsed, Refusal) else canonical(parsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=40, help="episodes to phrase and speak (default: 40)")
    parser.add_argument("--voices", default=HELD_OUT_VOICES, help=f"espeak-ng voices (default: {HELD_OUT_VOICES})")
    parser.add_argument("--snr-db", type=float, default=20.0, help="noisy condition's SNR in dB (default: 20)")
    parser.add_argument("--sets", default="own,heldout,heldout2",
                        help="phrasings to speak: own (the templates) and phrasing sets of config/phrasings "
                             "(default: own,heldout,heldout2)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/speech-language.json"))
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from molmomotion_ros.speech import Recognizer, RecognizerConfig, read_wav
    from molmomotion_ros.speech.synth import synthesize

    recognizer = Recognizer(RecognizerConfig(free_phrasing=True))
    voices, sets = args.voices.split(","), args.sets.split(",")
    rows = episodes(args.commands, sets)
    conditions = ("clean", f"{args.snr_db:g} dB SNR")
    decodes = []
    jobs = [(row, s, v) for row in rows for s in sets for v in voices]
    with tempfile.TemporaryDirectory() as tmp:
        for k, (row, phrasing, voice) in enumerate(tqdm(jobs, desc="speech", unit="sentence")):
            spoken = row[phrasing]
            clean = read_wav(synthesize(spoken, Path(tmp) / f"{k}.wav", voice=voice))
            for condition in conditions:
                pcm = clean if condition == "clean" else with_noise(clean, args.snr_db, seed=k)
                result = recognizer.recognize_pcm(pcm)
                truth = command(spoken)
                got = command(result.text) if result.recognised else None
                errors, words = word_errors(spoken, result.hypothesis)
                decodes.append({
                    "family": row["family"], "seed": row["seed"], "set": phrasing, "voice": voice,
                    "condition": condition, "spoken": spoken, "heard": result.hypothesis, "returned": result.text,
                    "status": result.status.value, "source": result.source, "confidence": result.confidence,
                    "outcome": "right" if got is not None and got == truth else "wrong" if got else "refused",
                    "template_path": "recognised" if result.recognised and result.source == "grammar" else "refused",
                    "word_errors": errors, "words": words, "decode_s": result.decode_s, "audio_s": result.audio_s,
                })
    summary = []
    for phrasing in sets:
        for voice in voices:
            for condition in conditions:
                cell = [d for d in decodes if (d["set"], d["voice"], d["condition"]) == (phrasing, voice, condition)]
                n = len(cell)
                summary.append({
                    "set": phrasing, "voice": voice, "condition": condition, "n": n,
                    "right": sum(d["outcome"] == "right" for d in cell),
                    "wrong": sum(d["outcome"] == "wrong" for d in cell),
                    "refused": sum(d["outcome"] == "refused" for d in cell),
                    "template_path_right": sum(d["outcome"] == "right" and d["source"] == "grammar" for d in cell),
                    "wer": sum(d["word_errors"] for d in cell) / max(1, sum(d["words"] for d in cell)),
                    "mean_decode_s": float(np.mean([d["decode_s"] for d in cell])) if cell else 0.0,
                })
    print(f"{'phrasings':<9} {'voice':<12} {'condition':<11} {'n':>3} {'right':>6} {'wrong':>6} {'refused':>7} "
          f"{'templates only':>14} {'WER':>6} {'decode s':>8}")
    for s in summary:
        print(f"{s['set']:<9} {s['voice']:<12} {s['condition']:<11} {s['n']:>3} {s['right']:>6} {s['wrong']:>6} "
              f"{s['refused']:>7} {s['template_path_right']:>14} {s['wer']:>6.1%} {s['mean_decode_s']:>8.2f}")
    print("right: the returned command has the spoken sentence's task and arguments; wrong: another command; "
          "templates only: right without the free-phrasing path")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join(["bench/bench_speech_language.py", *(argv if argv is not None else sys.argv[1:])]),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "versions": {p: importlib.metadata.version(p) for p in ("pocketsphinx", "numpy")},
        "voices": voices, "snr_db": args.snr_db, "summary": summary, "decodes": decodes,
    }, indent=1))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
