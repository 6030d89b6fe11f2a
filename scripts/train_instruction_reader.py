"""Train the instruction reader (molmomotion_ros/instruction_reader.py) on the generated language and choose its
thresholds on verbs it never trained on. Writes molmomotion_ros/checkpoints/instruction_reader.npz (a few kB)
and docs/results/reading/reader-training.json (the choices and their validation costs).

    HF_HUB_OFFLINE=1 python scripts/train_instruction_reader.py [--train 16000] [--validation 6000]

1. Two corpora from language_corpus: training (seed 1) and validation (seed 2), objects masked
   (language.reader_text); the reader sees each distinct masked sentence once per corpus.
2. Four verb folds: for each, a reader trained on the other folds' verbs reads the validation sentences whose
   verb is in the fold (out-of-fold readings for every validation sentence).
3. The thresholds (accept_min, refuse_min; structure_refuse_max: an unsure reading lets the sentence's structure
   decide only while the refusal probability stays under it) are chosen by the whole parser's cost on those
   out-of-fold readings (1.01 = never, so "no reader" is in the grid): a wrong motion or an accepted impossible action
   costs 2, a wrongly refused instruction 1 (said again in other words; a wrong motion cannot be undone); ties
   go to the more refusing choice.
4. The shipped reader is trained on every verb of the training corpus with those thresholds.
No held-out phrasing file is read.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from molmomotion_ros import language
from molmomotion_ros.argtypes import positive_int
from molmomotion_ros.instruction_reader import CLASSES, DEFAULT_PATH, InstructionReader, Reading, decide, embed
from molmomotion_ros.language_corpus import Example, generate, verb_key
from molmomotion_ros.vocabulary import default_vocabulary

ROOT = Path(__file__).resolve().parents[1]
N_FOLDS = 4
TRAIN_SEED, VALIDATION_SEED = 1, 2
NEVER = 1.01  # a threshold no probability reaches: the grid includes "no reader" (lexicon, then structure)


def fold_of(example: Example) -> int:
    return zlib.crc32(f"0:{example.verb}".encode()) % N_FOLDS


def fit(x: np.ndarray, y: np.ndarray, seed: int = 0, steps: int = 400, weight_decay: float = 1e-3
        ) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, full batch, class-balanced."""
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    counts = torch.bincount(yt, minlength=len(CLASSES)).clamp(min=1).float()
    weight = torch.zeros(x.shape[1], len(CLASSES), requires_grad=True)
    bias = torch.zeros(len(CLASSES), requires_grad=True)
    optimiser = torch.optim.Adam([weight, bias], lr=0.05)
    loss_fn = torch.nn.CrossEntropyLoss(weight=counts.sum() / counts / len(CLASSES))
    for _ in range(steps):
        optimiser.zero_grad()
        loss = loss_fn(xt @ weight * 10.0 + bias, yt) + weight_decay * (weight ** 2).sum()
        loss.backward()
        optimiser.step()
    return (weight.detach() * 10.0).numpy(), bias.detach().numpy()


class _Forced:
    """A reader that always gives one reading (the parser's behaviour for each possible reading is computed once
    per sentence; the threshold search then only picks among them)."""

    def __init__(self, label: str | None, structure_may_decide: bool):
        self.label, self.structure_may_decide = label, structure_may_decide

    def read(self, _text: str) -> Reading:
        return Reading(self.label, dict.fromkeys(CLASSES, 0.0), self.structure_may_decide)


MODES = (*CLASSES, "unsure: structure", "unsure: refuse")


def mode_of(p: np.ndarray, accept_min: float, refuse_min: float, structure_refuse_max: float) -> int:
    """Which reading the parser gets: a class, or unsure (then the structure decides only while the refusal
    probability stays under ``structure_refuse_max``)."""
    label = decide(p, accept_min, refuse_min)
    if label is not None:
        return CLASSES.index(label)
    return 4 if p[CLASSES.index("refuse")] < structure_refuse_max else 5


def outcome(example: Example, parsed, vocabulary) -> str:
    if example.family is None:
        return "right" if isinstance(parsed, language.Refusal) else "wrong"
    if isinstance(parsed, language.Refusal):
        return "refused"
    ok = parsed.intent == example.family and parsed.fields(vocabulary) == example.fields
    return "right" if ok else "wrong"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=positive_int, default=16000, help="training sentences (default 16000)")
    parser.add_argument("--validation", type=positive_int, default=6000, help="validation sentences (default 6000)")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "results" / "reading" / "reader-training.json")
    args = parser.parse_args(argv)
    vocabulary = default_vocabulary()
    from molmomotion_ros.forecasting.text import default_text_encoder

    encoder = default_text_encoder()
    started = time.monotonic()
    train, validation = generate(args.train, TRAIN_SEED), generate(args.validation, VALIDATION_SEED)
    masked = {}
    for ex in (*train, *validation):
        masked.setdefault(language.reader_text(ex.text, vocabulary), None)
    texts = list(masked)
    print(f"{len(train)} + {len(validation)} sentences, {len(texts)} distinct once masked; embedding ...", flush=True)
    vectors = dict(zip(texts, embed(encoder, texts, cache=False), strict=True))
    label_index = {c: i for i, c in enumerate(CLASSES)}

    def arrays(examples):
        x = np.stack([vectors[language.reader_text(e.text, vocabulary)] for e in examples]).astype(np.float32)
        return x, np.array([label_index[e.label] for e in examples])

    xt, yt = arrays(train)
    xv, yv = arrays(validation)
    train_folds = np.array([fold_of(e) for e in train])
    val_folds = np.array([fold_of(e) for e in validation])
    oof = np.zeros((len(validation), len(CLASSES)), np.float32)
    for fold in range(N_FOLDS):
        w, b = fit(xt[train_folds != fold], yt[train_folds != fold], seed=fold)
        logits = xv[val_folds == fold] @ w + b
        z = np.exp(logits - logits.max(1, keepdims=True))
        oof[val_folds == fold] = z / z.sum(1, keepdims=True)
    oof_accuracy = float((oof.argmax(1) == yv).mean())
    print(f"out-of-fold (unseen verbs) argmax accuracy {oof_accuracy:.3f}", flush=True)

    clean = [i for i, e in enumerate(validation) if not e.noisy]
    kinds = ("right", "refused", "wrong")
    outcomes = np.zeros((len(clean), len(MODES)), int)  # index into kinds
    for row, i in enumerate(clean):
        for m, mode in enumerate(MODES):
            forced = _Forced(mode if m < 4 else None, m == 4)
            parsed = language.parse_instruction(validation[i].text, vocabulary, fallback=forced)
            outcomes[row, m] = kinds.index(outcome(validation[i], parsed, vocabulary))
    grid = []
    for accept_min, refuse_min, structure_refuse_max in itertools.product(
            (0.5, 0.7, 0.9, 0.95, 0.98, 0.99, NEVER), (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, NEVER),
            (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, NEVER)):
        modes = [mode_of(oof[i], accept_min, refuse_min, structure_refuse_max) for i in clean]
        picked = outcomes[np.arange(len(clean)), modes]
        tally = {k: int((picked == j).sum()) for j, k in enumerate(kinds)}
        grid.append({"accept_min": accept_min, "refuse_min": refuse_min,
                     "structure_refuse_max": structure_refuse_max, "cost": 2 * tally["wrong"] + tally["refused"],
                     **tally})
    lexicon_only = {"right": 0, "refused": 0, "wrong": 0}
    for i in clean:
        lexicon_only[outcome(validation[i], language.parse_instruction(validation[i].text, vocabulary,
                                                                        fallback=False), vocabulary)] += 1
    # Least cost; ties to the more refusing choice (less structure fallback, higher thresholds).
    best = min(grid, key=lambda g: (g["cost"], g["structure_refuse_max"], -g["accept_min"], -g["refuse_min"]))
    print(f"chosen on {len(clean)} validation sentences (unseen verbs): {best}; lexicon alone: {lexicon_only}")

    w, b = fit(xt, yt, seed=0)
    info = {"corpus": {"train": args.train, "train_seed": TRAIN_SEED, "validation": args.validation,
                       "validation_seed": VALIDATION_SEED, "distinct_masked": len(texts)},
            "out_of_fold_accuracy": oof_accuracy, "chosen_on": "out-of-fold readings, validation corpus",
            "verbs": len({verb_key(e.verb) for e in train})}
    reader = InstructionReader(w, b, best["accept_min"], best["refuse_min"], best["structure_refuse_max"],
                               encoder=encoder, info=info)
    reader.save(args.out)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps({"chosen": best, "lexicon_only": lexicon_only, "grid": grid, **info},
                                      indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} B) and {args.report} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
