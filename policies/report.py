"""``molmomotion experiment report DIR``: every table and plot of the success-rate experiment, rebuilt from its
evaluation files alone (issue 21).

Reads every ``<variant>-s<seed>-<step>.json`` under DIR (the harness JSON that ``experiment success-rate``
writes per checkpoint: ``meta``, ``summary``, ``episodes``), groups them by suite and seed split, and builds per
variant x steps the success rate with its hierarchical bootstrap interval over training seeds and scenes
(:mod:`molmomotion_policies.statistics`) and n = seeds x scenes; the protocol's pairs paired per scene; each
training seed's rate; the protocol's bars (met by the point estimate, met with 95% confidence); the old pooled
tables (Wilson, slot-independent paired intervals) for comparison with what the runs reported; and what the
files say about themselves that a reader should know (metadata the runner does not write, summaries that
disagree with their episodes, seeds outside the protocol's test suite, a runner summary that disagrees).

Nothing here reads a checkpoint, a model or the simulator: numpy, JSON and matplotlib (Agg) only.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from molmomotion_sim.seeds import SeedRangeError, split_of

from .protocol import Protocol, load_protocol
from .statistics import Estimate, bootstrap_pair, bootstrap_rate, naive_paired_difference, wilson_interval

EVAL_NAME = re.compile(r"^(?P<variant>[A-Za-z][A-Za-z0-9_+.]*)-s(?P<seed>\d+)-(?P<step>\d+)\.json$")
# What experiment.evaluate_checkpoint and sim.evaluation.write_results put in ``meta`` (and the executor of
# issue 20); anything else was added by something other than the runner.
RUNNER_META = {"checkpoint", "checkpoint_mtime", "suite", "agent", "model_id", "agent_config", "timestamp",
               "git_revision", "executor", "config_hash"}
PLOTS = {"success": "report_success_vs_steps.png", "pairs": "report_paired_differences.png",
         "seeds": "report_per_seed.png"}


class ReportError(ValueError):
    """DIR holds no usable evaluation files, or files that contradict each other."""


@dataclass
class Evaluation:
    """One checkpoint's episodes: (family, seed) → success."""

    path: Path
    variant: str
    seed: int
    step: int
    suite: str
    split: str
    outcomes: dict[tuple[str, int], bool]
    meta: dict
    summary_all: dict | None


@dataclass
class Cell:
    """One variant at one step: y[training seed, scene] over the scenes every seed ran."""

    variant: str
    step: int
    seeds: tuple[int, ...]
    scenes: tuple[tuple[str, int], ...]
    y: np.ndarray

    @property
    def families(self) -> list[str]:
        return [family for family, _ in self.scenes]

    @property
    def n_label(self) -> str:
        return f"{len(self.seeds)} × {len(self.scenes)}"


@dataclass
class Group:
    """The evaluations of one suite on one split (e.g. the main suite's test seeds)."""

    suite: str
    split: str
    cells: dict[tuple[str, int], Cell]
    files: list[Evaluation]
    rates: dict[tuple[str, int], Estimate] = field(default_factory=dict)
    pairs: dict[tuple[str, str, int], Estimate] = field(default_factory=dict)
    pairs_simultaneous: dict[tuple[str, str, int], Estimate] = field(default_factory=dict)
    ratios: dict[tuple[str, str, int], Estimate] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.split}"

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(v for v, _ in self.cells))

    @property
    def steps(self) -> list[int]:
        return sorted({s for _, s in self.cells})

    def seed_ranges(self) -> dict[str, tuple[int, int]]:
        by_family: dict[str, list[int]] = {}
        for cell in self.cells.values():
            for family, seed in cell.scenes:
                by_family.setdefault(family, []).append(seed)
        return {f: (min(s), max(s)) for f, s in sorted(by_family.items())}


@dataclass
class Report:
    directory: str
    protocol: Protocol
    groups: list[Group]
    notes: dict[str, list[str]]  # per group key: caveats a reader must see (in the headline)
    checks: dict[str, list[str]]  # per group key: what was checked and agrees (in the full report)
    headline: str = ""
    markdown: str = ""
    data: dict = field(default_factory=dict)


# --- reading ---------------------------------------------------------------------------------------------
def load_evaluations(directory: str | Path) -> list[Evaluation]:
    """Every evaluation file under ``directory`` (any depth), named ``<variant>-s<seed>-<step>.json``."""
    root = Path(directory)
    if not root.is_dir():
        raise ReportError(f"no folder {root}")
    out = []
    for path in sorted(root.rglob("*.json")):
        match = EVAL_NAME.match(path.name)
        if not match:
            continue
        try:
            document = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ReportError(f"{path} is not readable JSON: {err}") from None
        if not isinstance(document, dict) or not isinstance(document.get("episodes"), list):
            raise ReportError(f"{path} is named like an evaluation but holds no episode list")
        episodes = document["episodes"]
        if not episodes:
            raise ReportError(f"{path} holds no episodes")
        outcomes = {}
        for e in episodes:
            key = (str(e["family"]), int(e["seed"]))
            if key in outcomes:
                raise ReportError(f"{path} holds {key[0]} seed {key[1]} twice")
            outcomes[key] = bool(e["success"])
        try:
            splits = {split_of(seed) for _, seed in outcomes}
        except SeedRangeError as err:
            raise ReportError(f"{path}: {err}") from None
        if len(splits) != 1:
            raise ReportError(f"{path} mixes seed splits {sorted(splits)}")
        meta = document.get("meta") or {}
        summary_all = next((row for row in document.get("summary") or [] if row.get("family") == "all"), None)
        out.append(Evaluation(path, match["variant"], int(match["seed"]), int(match["step"]),
                              str(meta.get("suite", "unknown")), splits.pop(), outcomes, meta, summary_all))
    if not out:
        raise ReportError(f"no evaluation files (<variant>-s<seed>-<step>.json) under {root}")
    return out


def group_evaluations(evaluations: list[Evaluation], order: list[str]) -> list[Group]:
    """Cells per (suite, split); a cell's seeds must have run the same scenes (else the pairing is meaningless)."""
    by_group: dict[tuple[str, str], list[Evaluation]] = {}
    for e in evaluations:
        by_group.setdefault((e.suite, e.split), []).append(e)
    groups = []
    for (suite, split), files in by_group.items():
        cells_files: dict[tuple[str, int], dict[int, Evaluation]] = {}
        for e in files:
            slot = cells_files.setdefault((e.variant, e.step), {})
            if e.seed in slot:
                raise ReportError(f"{e.variant} seed {e.seed} at {e.step} steps twice: {slot[e.seed].path} and "
                                  f"{e.path}")
            slot[e.seed] = e
        scenes_of_group = None
        cells = {}
        rank = {v: i for i, v in enumerate(order)}
        for (variant, step), by_seed in sorted(cells_files.items(),
                                               key=lambda kv: (rank.get(kv[0][0], len(rank)), kv[0][0], kv[0][1])):
            seeds = tuple(sorted(by_seed))
            scenes = tuple(sorted(by_seed[seeds[0]].outcomes))
            for s in seeds[1:]:
                if tuple(sorted(by_seed[s].outcomes)) != scenes:
                    raise ReportError(f"{variant} at {step} steps: seed {s} ran other scenes than seed {seeds[0]} "
                                      f"({by_seed[s].path.name} vs {by_seed[seeds[0]].path.name})")
            if scenes_of_group is not None and scenes != scenes_of_group:
                raise ReportError(f"{suite}/{split}: {variant} at {step} steps ran other scenes than the rest "
                                  "(every checkpoint of a suite must run the same scenes)")
            scenes_of_group = scenes
            y = np.array([[by_seed[s].outcomes[k] for k in scenes] for s in seeds], float)
            cells[(variant, step)] = Cell(variant, step, seeds, scenes, y)
        groups.append(Group(suite, split, cells, files))
    split_rank = {"test": 0, "ood": 1, "validation": 2, "train": 3}
    return sorted(groups, key=lambda g: (split_rank.get(g.split, 9), g.suite))


# --- statistics ------------------------------------------------------------------------------------------
def _seed_for(protocol: Protocol, *parts) -> int:
    """A bootstrap seed per cell, from the protocol's seed and the cell's name: adding a variant or a step to a
    run leaves every other cell's interval as it was."""
    return protocol.statistics.seed * 1_000_003 + zlib.crc32("|".join(map(str, parts)).encode())


def compute(group: Group, protocol: Protocol, replicates: int | None = None) -> None:
    stats = protocol.statistics
    reps = replicates or stats.replicates
    kw = {"level": stats.level, "replicates": reps, "scene_draw": stats.scene_draw}

    def strata(cell):
        return cell.families if stats.strata == "family" else None

    for (variant, step), cell in group.cells.items():
        group.rates[(variant, step)] = bootstrap_rate(cell.y, strata(cell), seed=_seed_for(protocol, group.key, variant,
                                                                                             step), **kw)
    grid_steps = len(protocol.step_grid)
    for first, second in _pairs(group, protocol):
        for step in group.steps:
            if (first, step) not in group.cells or (second, step) not in group.cells:
                continue
            a, b = group.cells[(first, step)], group.cells[(second, step)]
            seed = _seed_for(protocol, group.key, first, second, step)
            group.pairs[(first, second, step)] = bootstrap_pair(a.y, b.y, strata(a), seed=seed, **kw)
            simultaneous = {**kw, "level": 1 - (1 - stats.level) / grid_steps}
            group.pairs_simultaneous[(first, second, step)] = bootstrap_pair(a.y, b.y, strata(a), seed=seed,
                                                                             **simultaneous)
    for bar in protocol.bars:
        if bar.kind != "ratio":
            continue
        first, second = bar.variants
        for step in bar.steps:
            if (first, step) in group.cells and (second, step) in group.cells:
                a, b = group.cells[(first, step)], group.cells[(second, step)]
                group.ratios[(first, second, step)] = bootstrap_pair(
                    a.y, b.y, strata(a), seed=_seed_for(protocol, group.key, "ratio", first, second, step),
                    statistic="ratio", **kw)


def _pairs(group: Group, protocol: Protocol) -> list[tuple[str, str]]:
    present = set(group.variants)
    return [(a, b) for a, b in protocol.pairs if a in present and b in present]


# --- formatting ------------------------------------------------------------------------------------------
def step_label(step: int) -> str:
    if step >= 1000 and step % 1000 == 0:
        return f"{step // 1000}k"
    if step >= 1000 and step % 100 == 0:
        return f"{step / 1000:g}k"
    return str(step)


def _pct(x: float, signed: bool = False) -> str:
    text = f"{x * 100:+.1f}" if signed else f"{x * 100:.1f}"
    return text.replace("-", "−")


def _interval(e: Estimate, signed: bool = False) -> str:
    return f"{_pct(e.value, signed)} [{_pct(e.lo, signed)}, {_pct(e.hi, signed)}]"


def _ratio(e: Estimate) -> str:
    def r(x):
        return "∞" if math.isinf(x) else f"{x:.2f}"

    return f"{r(e.value)}× [{r(e.lo)}, {r(e.hi)}]"


def _seed_range_text(group: Group) -> str:
    ranges = set(group.seed_ranges().values())
    if len(ranges) == 1:
        lo, hi = ranges.pop()
        return f"seeds {lo}–{hi} per family"
    return "seeds " + "; ".join(f"{f} {lo}–{hi}" for f, (lo, hi) in group.seed_ranges().items())


def _row_n(group: Group, variant: str) -> tuple[str, bool]:
    labels = {c.n_label for (v, _), c in group.cells.items() if v == variant}
    return (labels.pop(), True) if len(labels) == 1 else ("varies", False)


def _command(directory: str) -> str:
    return f"molmomotion experiment report {directory}"


def headline(report: Report, group: Group) -> str:
    """The compact table (what the command prints and what the README carries)."""
    p = report.protocol
    steps = group.steps
    stats = p.statistics
    lines = [
        f"Success rate in % (`{_command(report.directory)}`): {group.suite} suite, {group.split} split, "
        f"{_seed_range_text(group)}; {stats.level:.0%} intervals from a hierarchical bootstrap over training "
        f"seeds and scenes ({stats.replicates:,} replicates); n = training seeds × scenes.",
        "",
        "| variant | n | " + " | ".join(f"{step_label(s)}{' steps' if i == 0 else ''}" for i, s in enumerate(steps))
        + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    pairs = _pairs(group, p)
    order = group.variants

    def pairs_after(variant):  # a pair's row follows the later of its two variants
        return [(a, b) for a, b in pairs if max(order.index(a), order.index(b)) == order.index(variant)]

    for variant in order:
        lines.append(_rate_row(group, variant, steps))
        lines += [_pair_row(group, a, b, steps) for a, b in pairs_after(variant)]
    reference = _reference_row(p, steps)
    if reference:
        lines.append(reference)
    lines += ["", _per_seed_intro(group), "", "| variant | " + " | ".join(f"{step_label(s)}" for s in steps) + " |",
              "|---|" + "---|" * len(steps)]
    for variant in order:
        cells = [group.cells.get((variant, s)) for s in steps]
        lines.append(f"| {variant} | " + " | ".join(
            " / ".join(f"{r * 100:.0f}" for r in c.y.mean(1)) if c is not None else "–" for c in cells) + " |")
        lines += [_per_seed_pair_row(group, a, b, steps) for a, b in pairs_after(variant)]
    lines += ["", *_bar_lines(report, group)]
    notes = report.notes.get(group.key, [])
    if notes:
        lines += [""] + [f"- ⚠ {n}" for n in notes]
    return "\n".join(lines)


def _rate_row(group: Group, variant: str, steps: list[int]) -> str:
    n, uniform = _row_n(group, variant)
    cells = []
    for s in steps:
        e = group.rates.get((variant, s))
        if e is None:
            cells.append("–")
            continue
        text = _interval(e)
        if not uniform:
            text += f" (n = {group.cells[(variant, s)].n_label})"
        cells.append(text)
    return f"| {variant} | {n} | " + " | ".join(cells) + " |"


def _pair_row(group: Group, first: str, second: str, steps: list[int]) -> str:
    cells = [_interval(group.pairs[(first, second, s)], signed=True) if (first, second, s) in group.pairs else "–"
             for s in steps]
    n_first, _ = _row_n(group, first)
    return f"| {first} − {second}, paired per scene | {n_first} | " + " | ".join(cells) + " |"


def _reference_row(protocol: Protocol, steps: list[int]) -> str:
    ref = (protocol.reference or {}).get("molmomotion")
    if not ref or not steps:
        return ""
    cells = []
    for s in steps:
        entry = ref.get("final") if s == protocol.final_step and s == steps[-1] else ref.get(str(s))
        cells.append(_reference_pair(entry["A"], entry["B"]) if entry else "")
    if not any(cells):
        return ""
    return "| MolmoMotion A vs B (real Franka, fine-tuned 4B backbone) | | " + " | ".join(cells) + " |"


def _reference_pair(a: float, b: float) -> str:
    whole = all(abs(x * 100 - round(x * 100)) < 1e-9 for x in (a, b))
    return f"{a * 100:.0f} vs {b * 100:.0f}" if whole else f"{a * 100:.1f} vs {b * 100:.1f}"


def _per_seed_intro(group: Group) -> str:
    seeds = sorted({s for c in group.cells.values() for s in c.seeds})
    scenes = {len(c.scenes) for c in group.cells.values()}
    of = f"of {scenes.pop()} scenes" if len(scenes) == 1 else "of its scenes"
    return f"Per training seed (success in % {of}; seeds {' / '.join(map(str, seeds))}):"


def _per_seed_pair_row(group: Group, first: str, second: str, steps: list[int]) -> str:
    cells = []
    for s in steps:
        a, b = group.cells.get((first, s)), group.cells.get((second, s))
        if a is None or b is None or a.seeds != b.seeds:
            cells.append("–")
            continue
        cells.append(" / ".join(f"{d * 100:+.0f}".replace("-", "−") for d in a.y.mean(1) - b.y.mean(1)))
    return f"| {first} − {second} (same seed number) | " + " | ".join(cells) + " |"


def _bar_lines(report: Report, group: Group) -> list[str]:
    p = report.protocol
    lines = ["Bars (`policies/protocol.yaml`; met: the point estimate reaches the bar; with 95% confidence: the "
             "interval's lower end does):"]
    for bar in p.bars:
        if bar.kind == "rate":
            (variant,) = bar.variants
            step = bar.steps[0]
            e = group.rates.get((variant, step))
            head = f"- {variant} ≥ {bar.threshold:.0%} at {step_label(step)} steps"
            if e is None:
                lines.append(f"{head}: not measured (no {variant} at {step_label(step)} steps)")
                continue
            lines.append(f"{head}: {_interval(e)} — {_verdict(e, bar.threshold)}")
        elif bar.kind == "paired_difference":
            first, second = bar.variants
            measured = [s for s in bar.steps if (first, second, s) in group.pairs]
            head = f"- {first} − {second} ≥ {bar.threshold * 100:g} points at equal steps"
            if not measured:
                lines.append(f"{head}: not measured")
                continue
            met = [s for s in measured if group.pairs[(first, second, s)].value >= bar.threshold - 1e-12]
            sure = [s for s in measured if group.pairs[(first, second, s)].lo >= bar.threshold - 1e-12]
            both = [s for s in measured if group.pairs_simultaneous[(first, second, s)].lo >= bar.threshold - 1e-12]
            missing = [s for s in bar.steps if s not in measured]
            text = (f"{head}: met at {_steps(met)}; with 95% confidence at {_steps(sure)}; with 95% confidence "
                    f"simultaneously over the {len(p.step_grid)} grid steps at {_steps(both)}")
            if missing:
                text += f"; not measured at {_steps(missing)}"
            lines.append(text)
        elif bar.kind == "ratio":
            first, second = bar.variants
            step = bar.steps[0]
            e = group.ratios.get((first, second, step))
            head = f"- {first} ≥ {bar.threshold:g}× {second} at {step_label(step)} steps"
            if e is None:
                lines.append(f"{head}: not measured")
                continue
            lines.append(f"{head}: {_ratio(e)} — {_verdict(e, bar.threshold)}")
    return lines


def _steps(steps: list[int]) -> str:
    return ", ".join(step_label(s) for s in steps) if steps else "none"


def _verdict(e: Estimate, threshold: float) -> str:
    if e.lo >= threshold - 1e-12:
        return "met, with 95% confidence"
    if e.value >= threshold - 1e-12:
        return "met by the point estimate, not with 95% confidence"
    if e.hi < threshold:
        return "not met (the interval lies below the bar)"
    return "not met (the interval reaches the bar)"


# --- notes -----------------------------------------------------------------------------------------------
def provenance_notes(report_dir: Path, group: Group, protocol: Protocol) -> list[str]:
    notes = []
    test = protocol.suites.get("test")
    scenes = {k for c in group.cells.values() for k in c.scenes}
    if group.split == "test" and test is not None and test.reserved is not None:
        outside = sorted({seed for _, seed in scenes if not test.reserved.start <= seed < test.reserved.stop})
        if outside:
            notes.append(f"Not the protocol's test suite: these test seeds ({outside[0]}–{outside[-1]}) lie outside "
                         f"its untouched range {test.reserved.start}–{test.reserved.stop - 1}, and earlier results on "
                         "them may have guided choices (issue 21).")
    unknown: dict[str, list[str]] = {}
    for e in group.files:
        for key in sorted(set(e.meta) - RUNNER_META):
            unknown.setdefault(key, []).append(e.path.stem)
    for key, stems in unknown.items():
        notes.append(f"{len(stems)} evaluation files carry metadata the experiment runner does not write "
                     f"(`{key}`): {', '.join(sorted(stems))}.")
    renamed = [e.path.stem for e in group.files if "checkpoint" in e.meta and not _checkpoint_matches(e)]
    if renamed:
        notes.append(f"{len(renamed)} evaluation files name a checkpoint of another variant, seed or step in their "
                     f"metadata: {', '.join(sorted(renamed))}.")
    disagree = [e.path.stem for e in group.files if e.summary_all is not None and (
        int(e.summary_all.get("n", -1)) != len(e.outcomes)
        or int(e.summary_all.get("successes", -1)) != sum(e.outcomes.values()))]
    if disagree:
        notes.append(f"{len(disagree)} evaluation files' summaries disagree with their episodes: "
                     f"{', '.join(sorted(disagree))}.")
    flat = [f"{c.variant} {step_label(c.step)}" for c in group.cells.values() if c.y.min() == c.y.max()]
    if flat:
        notes.append(f"Every episode had the same outcome in {', '.join(flat)}: the bootstrap interval is a single "
                     "point there (the Wilson interval in report.md is not).")
    single = sorted({c.variant for c in group.cells.values() if len(c.seeds) < 2})
    if single:
        notes.append(f"One training seed only for {', '.join(single)}: those intervals cannot include the "
                     "seed-to-seed spread.")
    off_grid = [s for s in group.steps if s not in protocol.step_grid]
    if off_grid:
        notes.append(f"Steps not on the protocol's grid: {_steps(off_grid)}.")
    return notes


def _checkpoint_matches(e: Evaluation) -> bool:
    """The runner evaluates ``runs/<variant>-s<seed>/step-<step>.pt`` into ``evals/<variant>-s<seed>-<step>.json``."""
    path = Path(str(e.meta["checkpoint"]))
    match = re.fullmatch(r"step-(\d+)\.pt", path.name)
    if not match or path.parent.name == "checkpoints":  # a shipped or hand-picked checkpoint: nothing to compare
        return True
    return int(match.group(1)) == e.step and path.parent.name == f"{e.variant}-s{e.seed}"


def runner_summary_check(directory: Path, group: Group) -> tuple[list[str], list[str]]:
    """Compare with the runner's own ``success_rate.json`` in DIR (when there is one and it covers this group):
    (warnings, agreement)."""
    path = directory / "success_rate.json"
    if not path.is_file() or group.split != "test":
        return [], []
    try:
        rows = json.loads(path.read_text()).get("rows", [])
    except (OSError, json.JSONDecodeError, AttributeError):
        return [f"{path.name} is not readable"], []
    by = {(r["variant"], int(r["step"])): r for r in rows}
    missing = [k for k in group.cells if k not in by]
    differ = [k for k, c in group.cells.items() if k in by and (int(by[k]["n"]) != c.y.size
                                                                  or int(by[k]["successes"]) != int(c.y.sum()))]
    extra = [k for k in by if k not in group.cells]
    lines = []
    if missing:
        lines.append(f"The runner's {path.name} has no row for {', '.join(f'{v} {step_label(s)}' for v, s in missing)} "
                     "(evaluated after it was last written).")
    if differ:
        lines.append(f"The runner's {path.name} disagrees with the evaluation files for "
                     f"{', '.join(f'{v} {step_label(s)}' for v, s in differ)}.")
    if extra:
        lines.append(f"The runner's {path.name} has rows without evaluation files: "
                     f"{', '.join(f'{v} {step_label(s)}' for v, s in extra)}.")
    agree = len(group.cells) - len(missing) - len(differ)
    return lines, [f"{agree} of {len(group.cells)} cells agree with the runner's {path.name} (n and successes)."]


# --- the full report ---------------------------------------------------------------------------------------
def full_markdown(report: Report, directory: Path) -> str:
    parts = [f"# Success-rate experiment: `{report.directory}`", "",
             f"Rebuilt from the evaluation files by `{_command(report.directory)}`; protocol "
             f"`policies/protocol.yaml` version {report.protocol.version} (sha256 {report.protocol.sha256[:12]}).", ""]
    for group in report.groups:
        parts += [f"## {group.suite} suite, {group.split} split", "", headline(report, group), ""]
        parts += _family_table(group)
        parts += _pooled_tables(group, report.protocol)
        parts += _simultaneous_table(group, report.protocol)
        parts += _sources(group, directory) + [f"- {c}" for c in report.checks.get(group.key, [])] + [""]
    parts += ["## Plots", ""] + [f"![{k}]({v})" for k, v in PLOTS.items()] + [""]
    return "\n".join(parts)


def _family_table(group: Group) -> list[str]:
    families = sorted({f for c in group.cells.values() for f in c.families})
    lines = ["Per family (success in %, all seeds pooled; n = seeds × scenes of the family):", "",
             "| variant | steps | " + " | ".join(families) + " |", "|---|---|" + "---|" * len(families)]
    for (variant, step), cell in group.cells.items():
        fam = np.array(cell.families)
        row = []
        for f in families:
            y = cell.y[:, fam == f]
            row.append(f"{y.mean() * 100:.0f} ({len(cell.seeds)} × {y.shape[1]})" if y.size else "–")
        lines.append(f"| {variant} | {step} | " + " | ".join(row) + " |")
    return lines + [""]


def _pooled_tables(group: Group, protocol: Protocol) -> list[str]:
    lines = ["As the runs reported before issue 21 (every episode an independent trial: Wilson intervals; paired "
             "differences with a normal interval over (seed, scene) slots), next to the hierarchical interval:", "",
             "| variant | steps | n | success | rate | 95% Wilson | hierarchical 95% | width ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for (variant, step), cell in group.cells.items():
        k, n = int(cell.y.sum()), cell.y.size
        lo, hi = wilson_interval(k, n)
        e = group.rates[(variant, step)]
        ratio = (e.hi - e.lo) / (hi - lo) if hi > lo else float("nan")
        lines.append(f"| {variant} | {step} | {n} | {k} | {k / n:.1%} | [{lo:.1%}, {hi:.1%}] | "
                     f"[{e.lo:.1%}, {e.hi:.1%}] | {ratio:.1f} |")
    pairs = _pairs(group, protocol)
    if pairs:
        lines += ["", "| pair | steps | n | first only | second only | difference | 95% slot-independent | "
                  "hierarchical 95% |", "|---|---|---|---|---|---|---|---|"]
        for first, second in pairs:
            for step in group.steps:
                if (first, second, step) not in group.pairs:
                    continue
                a, b = group.cells[(first, step)], group.cells[(second, step)]
                e = group.pairs[(first, second, step)]
                if a.seeds != b.seeds:
                    lines.append(f"| {first} vs {second} | {step} | – | – | – | {e.value * 100:+.1f} | – | "
                                 f"[{e.lo * 100:+.1f}, {e.hi * 100:+.1f}] |")
                    continue
                diff, lo, hi = naive_paired_difference(a.y, b.y)
                only_a = int(np.sum((a.y > 0.5) & (b.y < 0.5)))
                only_b = int(np.sum((b.y > 0.5) & (a.y < 0.5)))
                lines.append(f"| {first} vs {second} | {step} | {a.y.size} | {only_a} | {only_b} | {diff * 100:+.1f} | "
                             f"[{lo * 100:+.1f}, {hi * 100:+.1f}] | [{e.lo * 100:+.1f}, {e.hi * 100:+.1f}] |")
    return lines + [""]


def _simultaneous_table(group: Group, protocol: Protocol) -> list[str]:
    if not group.pairs_simultaneous:
        return []
    level = 1 - (1 - protocol.statistics.level) / len(protocol.step_grid)
    lines = [f"Paired differences with simultaneous intervals over the {len(protocol.step_grid)} grid steps "
             f"(Bonferroni: {level:.2%} per step):", "", "| pair | " + " | ".join(map(step_label, group.steps)) + " |",
             "|---|" + "---|" * len(group.steps)]
    for first, second in _pairs(group, protocol):
        cells = [_interval(group.pairs_simultaneous[(first, second, s)], signed=True)
                 if (first, second, s) in group.pairs_simultaneous else "–" for s in group.steps]
        lines.append(f"| {first} − {second} | " + " | ".join(cells) + " |")
    return lines + [""]


def _sources(group: Group, directory: Path) -> list[str]:
    revisions = sorted({str(e.meta.get("git_revision", "unknown"))[:7] for e in group.files})
    configs = {json.dumps(e.meta.get("agent_config", {}), sort_keys=True) for e in group.files}
    lines = [f"Sources: {len(group.files)} evaluation files under `{directory}`; code at {len(revisions)} "
             f"revision(s) ({', '.join(revisions)}); {len(configs)} distinct agent config(s)"
             + (f": `{configs.pop()}`." if len(configs) == 1 else " (they differ between files).")]
    reused = sorted(f"{e.path.stem}: {e.meta['reused_from']}" for e in group.files if "reused_from" in e.meta)
    if reused:
        lines += ["", "`reused_from` as written in the files:", ""] + [f"- {r}" for r in reused]
    return lines + [""]


# --- plots ------------------------------------------------------------------------------------------------
def write_plots(report: Report, out: Path) -> dict[str, Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    group = report.groups[0]
    files = {k: out / v for k, v in PLOTS.items()}

    figure = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    for variant in group.variants:
        steps = [s for s in group.steps if (variant, s) in group.rates]
        est = [group.rates[(variant, s)] for s in steps]
        rate = np.array([e.value for e in est]) * 100
        err = np.array([[e.value - e.lo for e in est], [e.hi - e.value for e in est]]) * 100
        axis.errorbar(steps, rate, yerr=err, marker="o", capsize=3, label=variant)
    axis.set_xscale("log")
    axis.set_xlabel("training steps")
    axis.set_ylabel("success (%), 95% hierarchical bootstrap")
    axis.set_ylim(-2, 102)
    axis.set_title(f"{group.suite} suite, {group.split} split", fontsize=10)
    axis.legend(title="variant")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(files["success"])

    figure = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    for first, second in _pairs(group, report.protocol):
        steps = [s for s in group.steps if (first, second, s) in group.pairs]
        est = [group.pairs[(first, second, s)] for s in steps]
        value = np.array([e.value for e in est]) * 100
        err = np.array([[e.value - e.lo for e in est], [e.hi - e.value for e in est]]) * 100
        axis.errorbar(steps, value, yerr=err, marker="o", capsize=3, label=f"{first} − {second}")
    for bar in report.protocol.bars:
        if bar.kind == "paired_difference":
            axis.axhline(bar.threshold * 100, color="grey", ls="--", lw=0.8,
                         label=f"bar: {bar.variants[0]} − {bar.variants[1]} ≥ {bar.threshold * 100:g}")
    axis.axhline(0, color="black", lw=0.6)
    axis.set_xscale("log")
    axis.set_xlabel("training steps")
    axis.set_ylabel("difference (points), paired per scene, 95%")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(files["pairs"])

    figure = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    colours = {v: f"C{i}" for i, v in enumerate(group.variants)}
    for variant in group.variants:
        steps = [s for s in group.steps if (variant, s) in group.cells]
        if not steps:
            continue
        seeds = group.cells[(variant, steps[0])].seeds
        for i, seed in enumerate(seeds):
            rates = [group.cells[(variant, s)].y[list(group.cells[(variant, s)].seeds).index(seed)].mean() * 100
                     if seed in group.cells[(variant, s)].seeds else np.nan for s in steps]
            axis.plot(steps, rates, color=colours[variant], alpha=0.6, lw=1, marker=".",
                      label=variant if i == 0 else None)
    axis.set_xscale("log")
    axis.set_xlabel("training steps")
    axis.set_ylabel("success per training seed (%)")
    axis.set_ylim(-2, 102)
    axis.legend(title="variant")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(files["seeds"])
    return files


# --- the whole thing ------------------------------------------------------------------------------------------
def build_report(directory: str | Path, protocol: Protocol | None = None, replicates: int | None = None,
                 display_dir: str | None = None) -> Report:
    """Read, compute and format (nothing written). ``display_dir``: how the folder is named in the text
    (default: as given)."""
    protocol = protocol or load_protocol()
    root = Path(directory)
    order = list(protocol.variants)
    groups = group_evaluations(load_evaluations(root), order)
    report = Report(display_dir or str(directory), protocol, groups, {}, {})
    for group in groups:
        compute(group, protocol, replicates)
        warnings, agreement = runner_summary_check(root, group)
        report.notes[group.key] = provenance_notes(root, group, protocol) + warnings
        report.checks[group.key] = agreement
    report.headline = "\n\n".join(headline(report, g) if len(groups) == 1 else
                                  f"**{g.suite} suite, {g.split} split**\n\n{headline(report, g)}" for g in groups)
    report.markdown = full_markdown(report, Path(report.directory))
    report.data = _data(report)
    return report


def _data(report: Report) -> dict:
    out = {"directory": report.directory, "protocol_version": report.protocol.version,
           "protocol_sha256": report.protocol.sha256, "groups": []}
    for g in report.groups:
        out["groups"].append({
            "suite": g.suite, "split": g.split, "notes": report.notes.get(g.key, []),
            "cells": [{"variant": v, "step": s, "seeds": list(c.seeds), "scenes": len(c.scenes), "n": int(c.y.size),
                       "successes": int(c.y.sum()), "per_seed": [float(r) for r in c.y.mean(1)],
                       "estimate": g.rates[(v, s)].as_dict()} for (v, s), c in g.cells.items()],
            "pairs": [{"first": a, "second": b, "step": s, "estimate": e.as_dict(),
                       "simultaneous": g.pairs_simultaneous[(a, b, s)].as_dict()} for (a, b, s), e in g.pairs.items()],
            "ratios": [{"first": a, "second": b, "step": s, "estimate": e.as_dict()}
                       for (a, b, s), e in g.ratios.items()],
        })
    return _finite(out)


def _finite(x):
    """JSON has no infinity: an unbounded ratio is written as null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_report(report: Report, out: str | Path, plots: bool = True) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "report.md", "json": out / "report.json"}
    files["markdown"].write_text(report.markdown)
    files["json"].write_text(json.dumps(report.data, indent=2, allow_nan=False) + "\n")
    if plots:
        files.update(write_plots(report, out))
    return files
