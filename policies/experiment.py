"""The success-rate experiment: train each variant, checkpoint on a step grid, evaluate every checkpoint.

Reproduces at our scale the experiment behind MolmoMotion's "76.3% vs 56.0%" (policy backbone
initialised from the motion model vs from the base VLM). Everything lands in ``out_dir``:

  runs/<variant>-s<seed>/       training run (step-NNNNNN.pt, state.pt, history.json)
  evals/<variant>-s<seed>-<step>.json   per-episode results of one checkpoint (harness JSON format)
  success_rate.json, success_rate.md, success_vs_steps.png, val_error.png   the summary

Every stage skips what is already on disk, so an interrupted run resumes where it stopped; the
config is stored and a different config in the same folder is refused; more variants or steps extend
it (an earlier step than a finished run reached is replayed, deterministically). Test seeds are the same
for every checkpoint (paired comparison); training uses train seeds, validation validation seeds.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from molmomotion_sim.episode import EpisodeResult, run_episode
from molmomotion_sim.evaluation import summarize, write_results
from molmomotion_sim.seeds import split_seeds
from molmomotion_sim.tasks import TASKS
from molmomotion_sim.world import World

from .agent import AgentConfig, PolicyAgent
from .demos import FAMILIES, DemoConfig, load_or_record
from .model import FINETUNE_MODES, VARIANTS, PolicyConfig
from .observation import PolicyError
from .train import LR_SCHEDULES, TrainConfig, TrainRun, train_policy

log = logging.getLogger(__name__)
MOLMOMOTION = {"final": {"A": 0.763, "B": 0.560}, "10k": {"A": 0.51, "B": 0.19}}  # NOTES.md


@dataclass(frozen=True)
class ExperimentConfig:
    variants: tuple[str, ...] = ("A", "B")
    steps: tuple[int, ...] = (1000, 2000, 5000, 10000, 20000)
    episodes_per_family: int = 10  # test episodes per family per checkpoint
    seeds: int = 1  # training seeds 0..seeds-1
    families: tuple[str, ...] = FAMILIES
    train_episodes_per_family: int = 50
    val_episodes_per_family: int = 10
    frames_every: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    eval_every: int = 250
    finetune: str = "none"  # none | post_trunk (PolicyConfig.finetune)
    encoder_lr: float = 1e-4  # the post-trunk layers' learning rate when fine-tuning
    max_samples: int = 150  # per test episode (15 fps samples)
    demo_cache: str = "data/policies/demos"
    footprint: bool = False  # PolicyConfig.footprint: the target's footprint orientation as a head input
    geometry_skip: bool = False  # PolicyConfig.geometry_skip
    lr_schedule: str = "constant"  # TrainConfig.lr_schedule
    state_noise_m: float = 0.0  # TrainConfig.state_noise_m
    state_noise_rad: float = 0.0  # TrainConfig.state_noise_rad

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise PolicyError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
        if self.seeds < 1 or self.episodes_per_family < 1:
            raise PolicyError("seeds and episodes_per_family must be >= 1")
        if self.finetune not in FINETUNE_MODES:
            raise PolicyError(f"unknown finetune mode {self.finetune!r}; choose from {', '.join(FINETUNE_MODES)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise PolicyError(f"unknown lr_schedule {self.lr_schedule!r}; choose from {', '.join(LR_SCHEDULES)}")
        if not (self.state_noise_m >= 0 and self.state_noise_rad >= 0):  # also refuses NaN
            raise PolicyError(f"state noise must be >= 0, got {self.state_noise_m} m and {self.state_noise_rad} rad")
        bad = set(self.families) - set(TASKS)
        if bad:
            raise PolicyError(f"unknown families {sorted(bad)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExperimentResult:
    summary: dict
    table: str
    files: dict[str, Path] = field(default_factory=dict)


def _jsonable_config(cfg: ExperimentConfig) -> dict:
    return json.loads(json.dumps(cfg.to_dict()))


def _identity(config: dict) -> dict:
    """What must match for a folder to be resumed: all but the variants and the step grid (both extend a run).
    Fields a stored config lacks (written before they existed) count as their defaults."""
    full = {**_jsonable_config(ExperimentConfig()), **config}
    return {k: v for k, v in full.items() if k not in ("variants", "steps")}


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path, progress: bool = True) -> ExperimentResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "experiment_config.json"
    stored = json.loads(config_path.read_text()) if config_path.is_file() else None
    if stored is not None and _identity(stored) != _identity(_jsonable_config(cfg)):
        raise PolicyError(f"{out} holds an experiment with another config (only variants and steps may change "
                          "between runs in one folder); choose another --out")
    config_path.write_text(json.dumps(_jsonable_config(cfg), indent=2) + "\n")

    demo_kw = {"families": tuple(cfg.families), "frames_every": cfg.frames_every,
               "forecast": any(VARIANTS[v]["forecast_conditioning"] for v in cfg.variants)}
    train_cfg = DemoConfig("train", cfg.train_episodes_per_family, **demo_kw)
    val_cfg = DemoConfig("validation", cfg.val_episodes_per_family, **demo_kw)
    train_demos = load_or_record(train_cfg, cfg.demo_cache, progress)
    val_demos = load_or_record(val_cfg, cfg.demo_cache, progress)
    test_specs = [(family, seed) for family in cfg.families for seed in split_seeds("test", cfg.episodes_per_family)]
    agent_cfg = AgentConfig(max_samples=cfg.max_samples)

    histories: dict[str, list[dict]] = {}
    train_rates: dict[str, float] = {}
    evals: dict[tuple[str, int, int], list[EpisodeResult]] = {}
    for variant in cfg.variants:
        for seed in range(cfg.seeds):
            run, run_evals = train_and_evaluate(cfg, out, variant, seed, train_demos, val_demos, test_specs,
                                                agent_cfg, progress)
            histories[f"{variant}-s{seed}"] = run.history
            if run.steps_per_s:
                train_rates[f"{variant}-s{seed}"] = run.steps_per_s
            evals.update({(variant, seed, step): results for step, results in run_evals.items()})
    summary = summarise(cfg, histories, evals, train_rates)
    table = format_summary(summary)
    files = write_summary(out, summary, table)
    return ExperimentResult(summary, table, files)


def train_and_evaluate(cfg: ExperimentConfig, out: Path, variant: str, seed: int, train_demos, val_demos,
                       test_specs: list[tuple[str, int]], agent_cfg: AgentConfig, progress: bool = True
                       ) -> tuple[TrainRun, dict[int, list[EpisodeResult]]]:
    """One (variant, seed) cell of the experiment: its training run and every checkpoint's test episodes."""
    name = f"{variant}-s{seed}"
    run = train_policy(
        PolicyConfig.for_variant(variant, encoder_seed=seed, finetune=cfg.finetune, footprint=cfg.footprint,
                                 geometry_skip=cfg.geometry_skip), train_demos, val_demos,
        out / "runs" / name,
        TrainConfig(steps=tuple(cfg.steps), batch_size=cfg.batch_size, lr=cfg.lr, encoder_lr=cfg.encoder_lr,
                    eval_every=cfg.eval_every, seed=seed, lr_schedule=cfg.lr_schedule,
                    state_noise_m=cfg.state_noise_m, state_noise_rad=cfg.state_noise_rad), progress=progress,
        encoding_cache=out / "encodings",
    )
    evals = {step: evaluate_checkpoint(checkpoint, test_specs, agent_cfg, out / "evals" / f"{name}-{step:06d}.json",
                                       progress)
             for step, checkpoint in sorted(run.checkpoints.items())}
    return run, evals


EVAL_SUITE = "main"  # whose task options the test episodes use


def evaluate_checkpoint(checkpoint: Path, specs: list[tuple[str, int]], agent_cfg: AgentConfig, path: Path,
                        progress: bool = True) -> list[EpisodeResult]:
    """Run the policy on every (family, test seed), in this process, with the scenes of the main suite
    (``molmomotion sim-eval`` draws the same ones); cached in ``path`` (harness JSON)."""
    if path.is_file():
        document = json.loads(path.read_text())
        meta = document.get("meta", {})
        if meta.get("checkpoint_mtime") == checkpoint.stat().st_mtime and meta.get("suite") == EVAL_SUITE:
            return [EpisodeResult(**e) for e in document["episodes"]]
    from tqdm import tqdm

    from molmomotion_sim.suites import load_suite

    # The suite's options (held-out target combinations excluded): without them some test seeds draw
    # another scene than the harness and the ROS graph show for the same seed.
    options = {f.family: f.options for f in load_suite(EVAL_SUITE).families}

    agent = PolicyAgent(checkpoint, agent_cfg)
    results, world = [], World()
    try:
        for family, seed in tqdm(specs, desc=f"eval {path.stem}", unit="ep", disable=not progress, dynamic_ncols=True):
            start = time.perf_counter()
            task = TASKS[family](world, options[family])
            try:
                results.append(run_episode(task, seed, agent))
            except Exception as err:  # one episode's crash is that episode's failure, as in the harness
                log.warning("%s seed %d raised %s: %s", family, seed, type(err).__name__, err)
                results.append(EpisodeResult(seed, family, task.instruction, False, f"{type(err).__name__}: {err}",
                                             0, world.time_s, time.perf_counter() - start, agent.name, agent.model_id))
                world.close()
                world = World()
    finally:
        world.close()
    write_results(path, results, {"checkpoint": str(checkpoint), "checkpoint_mtime": checkpoint.stat().st_mtime,
                                  "suite": EVAL_SUITE,
                                  "agent": agent.name, "model_id": agent.model_id,
                                  "agent_config": asdict(agent_cfg)})
    return results


def summarise(cfg: ExperimentConfig, histories: dict[str, list[dict]],
              evals: dict[tuple[str, int, int], list[EpisodeResult]], train_rates: dict[str, float]) -> dict:
    """Success per (variant, step) pooled over seeds (Wilson 95%), per family, validation curves, the bars."""
    rows = []
    for variant in cfg.variants:
        for step in cfg.steps:
            results = [r for seed in range(cfg.seeds) for r in evals.get((variant, seed, step), [])]
            if not results:
                continue
            per_family = {row.family: row.to_dict() for row in summarize(results)}
            overall = per_family.pop("all")
            rows.append({"variant": variant, "step": step, "n": overall["n"], "successes": overall["successes"],
                         "rate": overall["rate"], "lo": overall["lo"], "hi": overall["hi"],
                         "per_seed": [_rate(evals.get((variant, s, step), [])) for s in range(cfg.seeds)],
                         "families": {f: {k: row[k] for k in ("n", "successes", "rate", "lo", "hi")}
                                      for f, row in per_family.items()}})
    curves = _mean_curves(cfg, histories)
    return {"config": _jsonable_config(cfg), "rows": rows, "val_curves": curves,
            "steps_to_reach_B_final_val_error": _steps_to_reach(curves), "bars": _bars(rows, cfg),
            "paired": _paired_comparisons(cfg, evals),
            "train_steps_per_s": train_rates, "molmomotion": MOLMOMOTION,
            "failure_reasons": _failure_reasons(cfg, evals)}


def _rate(results: list[EpisodeResult]) -> float | None:
    return sum(r.success for r in results) / len(results) if results else None


def _mean_curves(cfg: ExperimentConfig, histories: dict[str, list[dict]]) -> dict:
    """Per variant: steps and the validation position error (cm), mean over seeds."""
    curves = {}
    for variant in cfg.variants:
        runs = [histories[f"{variant}-s{s}"] for s in range(cfg.seeds) if histories.get(f"{variant}-s{s}")]
        if not runs:
            continue
        steps = sorted(set.intersection(*(set(h["step"] for h in run) for run in runs)))
        def mean_at(key: str, step: int, runs=runs) -> float:
            return float(np.mean([next(h[key] for h in run if h["step"] == step) for run in runs]))

        err = [mean_at("val_pos_err_cm", s) for s in steps]
        grip = [mean_at("val_gripper_acc", s) for s in steps]
        curves[variant] = {"step": steps, "val_pos_err_cm": err, "val_gripper_acc": grip}
    return curves


def _steps_to_reach(curves: dict) -> dict:
    """Steps each variant needs to reach B's final validation position error (None = never in the run)."""
    if "B" not in curves or not curves["B"]["val_pos_err_cm"]:
        return {}
    target = curves["B"]["val_pos_err_cm"][-1]
    reached = {v: next((s for s, e in zip(c["step"], c["val_pos_err_cm"], strict=True) if e <= target), None)
               for v, c in curves.items()}
    return {"B_final_val_pos_err_cm": target, "steps": reached}


def _bars(rows: list[dict], cfg: ExperimentConfig) -> dict:
    by = {(r["variant"], r["step"]): r["rate"] for r in rows}
    final = cfg.steps[-1]
    bars = {}
    if ("A", final) in by:
        bars["A_final_ge_80"] = {"A": by[("A", final)], "pass": by[("A", final)] >= 0.80}
    if "A" in cfg.variants and "B" in cfg.variants:
        gaps = {s: by[("A", s)] - by[("B", s)] for s in cfg.steps if ("A", s) in by and ("B", s) in by}
        bars["A_minus_B_ge_15pt"] = {"gap_by_step": gaps, "steps_meeting": [s for s, g in gaps.items() if g >= 0.15],
                                     "pass_at_final": gaps.get(final, -1) >= 0.15}
        bars["A_over_B_by_step"] = {s: by[("A", s)] / by[("B", s)] if by[("B", s)] else None for s in gaps}
        if 10000 in gaps:
            a, b = by[("A", 10000)], by[("B", 10000)]
            bars["A_ge_2x_B_at_10k"] = {"A": a, "B": b, "pass": a > 0 and a >= 2 * b}
    return bars


PAIRS = (("A", "B"), ("C", "A"), ("A", "D"))  # (motion vs base), (forecast input), (pretraining vs none)


def _paired_comparisons(cfg: ExperimentConfig, evals: dict) -> list[dict]:
    """Per step, two variants on the same (seed, family, test seed) slots: the episodes only one of them
    solved, a two-sided sign test on those, and the difference in success rate with a 95% interval
    (normal approximation on the per-slot differences)."""
    out = []
    for x, y in PAIRS:
        for step in cfg.steps:
            a, b = ({(seed, r.family, r.seed): r.success for seed in range(cfg.seeds)
                     for r in evals.get((v, seed, step), [])} for v in (x, y))
            slots = sorted(set(a) & set(b))
            if not slots:
                continue
            x_only = sum(a[k] and not b[k] for k in slots)
            y_only = sum(b[k] and not a[k] for k in slots)
            n = len(slots)
            diff = (x_only - y_only) / n
            half = 1.96 * math.sqrt(max((x_only + y_only) / n - diff ** 2, 0.0) / n)
            out.append({"pair": f"{x} vs {y}", "step": step, "n": n, "x_only": x_only, "y_only": y_only,
                        "diff": diff, "diff_lo": diff - half, "diff_hi": diff + half,
                        "sign_test_p": _sign_test(x_only, y_only)})
    return out


def _sign_test(k: int, m: int) -> float:
    """Two-sided exact sign test: k and m discordant pairs, each side with probability 1/2 under H0."""
    n = k + m
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, m) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _failure_reasons(cfg: ExperimentConfig, evals: dict) -> dict:
    out: dict[str, dict[str, int]] = {}
    for (variant, _, step), results in evals.items():
        if step != cfg.steps[-1]:
            continue
        counts = out.setdefault(variant, {})
        for r in results:
            if not r.success:
                key = r.failure_reason.split(":")[0][:60] or "unknown"
                counts[key] = counts.get(key, 0) + 1
    return out


def format_summary(summary: dict) -> str:
    """Markdown: success vs steps per variant (95% Wilson), the final checkpoints per family, the bars."""
    families = sorted({f for r in summary["rows"] for f in r["families"]})
    lines = ["| variant | steps | n | success | rate | 95% CI | " + " | ".join(families) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(families)]
    for r in summary["rows"]:
        fam = " | ".join(f"{r['families'][f]['rate']:.0%}" if f in r["families"] else "–" for f in families)
        lines.append(f"| {r['variant']} | {r['step']} | {r['n']} | {r['successes']} | {r['rate']:.1%} | "
                     f"[{r['lo']:.1%}, {r['hi']:.1%}] | {fam} |")
    reach = summary.get("steps_to_reach_B_final_val_error") or {}
    if reach:
        lines.append("")
        lines.append(f"Validation action error (mean L2 of the chunk's offsets): B ends at "
                     f"{reach['B_final_val_pos_err_cm']:.2f} cm; steps to reach it: "
                     + ", ".join(f"{v} {s if s is not None else 'never'}" for v, s in reach["steps"].items()))
    paired = summary.get("paired") or []
    if paired:
        lines += ["", "Paired over the same test slots (seed, family, test seed): episodes only one variant solved, "
                  "sign test, difference with 95% interval", "",
                  "| pair | steps | n | first only | second only | difference | 95% CI | sign test p |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in paired:
            lines.append(f"| {c['pair']} | {c['step']} | {c['n']} | {c['x_only']} | {c['y_only']} | "
                         f"{c['diff'] * 100:+.1f} | [{c['diff_lo'] * 100:+.1f}, {c['diff_hi'] * 100:+.1f}] | "
                         f"{c['sign_test_p']:.2g} |")
    lines.append("")
    for name, bar in summary.get("bars", {}).items():
        lines.append(f"- {name}: {json.dumps(bar)}")
    return "\n".join(lines)


def write_summary(out: Path, summary: dict, table: str) -> dict[str, Path]:
    files = {"json": out / "success_rate.json", "table": out / "success_rate.md",
             "success_png": out / "success_vs_steps.png", "val_png": out / "val_error.png"}
    files["json"].write_text(json.dumps(summary, indent=2) + "\n")
    files["table"].write_text(table + "\n")
    plot_success(summary, files["success_png"])
    plot_val_curves(summary, files["val_png"])
    return files


def plot_success(summary: dict, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    for variant in summary["config"]["variants"]:
        rows = [r for r in summary["rows"] if r["variant"] == variant]
        if not rows:
            continue
        steps = [r["step"] for r in rows]
        rate = np.array([r["rate"] for r in rows])
        err = np.array([[r["rate"] - r["lo"] for r in rows], [r["hi"] - r["rate"] for r in rows]])
        axis.errorbar(steps, rate * 100, yerr=err * 100, marker="o", capsize=3, label=f"{variant}")
    axis.set_xscale("log")
    axis.set_xlabel("training steps")
    axis.set_ylabel("success on test seeds (%), 95% Wilson")
    axis.set_ylim(-2, 102)
    axis.legend(title="variant")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_val_curves(summary: dict, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    for variant, curve in summary["val_curves"].items():
        axis.plot(curve["step"], curve["val_pos_err_cm"], label=variant)
    reach = summary.get("steps_to_reach_B_final_val_error") or {}
    if reach:
        axis.axhline(reach["B_final_val_pos_err_cm"], color="grey", ls="--", lw=0.8, label="B final")
    axis.set_xscale("log")
    axis.set_xlabel("training steps")
    axis.set_ylabel("validation action error (cm, chunk mean L2)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path
