"""Choose the sentence-encoder fallback's threshold and margin (molmomotion_ros/language.py) on the development
set's unknown verbs (test/language_dev.yaml, ``unknown_verbs``), never on held-out phrasings.

    PYTHONPATH=... HF_HUB_OFFLINE=1 python scripts/tune_parser_fallback.py

For each prototype set (the hand-written phrases alone, or with every lexicon verb) it prints the (threshold,
margin) pair of least cost, where a verb wrongly accepted (a motion for a verb that is no task, or the wrong
motion) costs 2 and a verb wrongly refused costs 1: a refused instruction can be said again in other words,
a guessed motion cannot be undone. Ties go to the more refusing pair.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import yaml

from molmomotion_ros import language

DEV_SET = Path(__file__).resolve().parents[1] / "test" / "language_dev.yaml"


def main() -> int:
    verbs = yaml.safe_load(DEV_SET.read_text())["unknown_verbs"]
    rows = [(verb, label) for label, words in verbs.items() for verb in words]
    for name, prototypes in (("hand-written phrases", dict(language.VERB_PROTOTYPES)),
                             ("phrases + lexicon verbs", language.default_prototypes())):
        classifier = language.VerbClassifier(prototypes=prototypes)
        scores = [classifier.scores(f"{verb} it") for verb, _ in rows]
        results = []
        for threshold, margin in itertools.product(np.arange(0.30, 0.71, 0.01), np.arange(-0.10, 0.21, 0.01)):
            guesses = [_guess(s, threshold, margin) for s in scores]
            labels = [label for _, label in rows]
            cost = sum(0 if g == y else 1 if g == "refuse" else 2 for g, y in zip(guesses, labels, strict=True))
            correct = sum(g == y for g, y in zip(guesses, labels, strict=True))
            results.append((cost, -(threshold + margin), correct, round(threshold, 2), round(margin, 2)))
        cost, _, correct, threshold, margin = min(results)
        accepted = sum(_guess(s, threshold, margin) != "refuse" for s, (_, label) in zip(scores, rows, strict=True)
                       if label == "refuse")
        print(f"{name}: {correct}/{len(rows)} unknown verbs right (cost {cost}) at threshold {threshold}, "
              f"margin {margin}; {accepted} verbs that are no task accepted; refusing all would get "
              f"{sum(label == 'refuse' for _, label in rows)}")
        for (verb, label), s in zip(rows, scores, strict=True):
            best = max((c for c in s if c != "refuse"), key=s.get)
            guess = _guess(s, threshold, margin)
            if guess != label:
                print(f"    {verb:12} {label:6} -> {guess:6} ({best} {s[best]:.3f}, refuse {s['refuse']:.3f})")
    return 0


def _guess(scores: dict[str, float], threshold: float, margin: float) -> str:
    best = max((c for c in scores if c != "refuse"), key=scores.get)
    return best if scores[best] >= threshold and scores[best] - scores["refuse"] >= margin else "refuse"


if __name__ == "__main__":
    raise SystemExit(main())
