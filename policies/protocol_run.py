"""``molmomotion experiment protocol``: the pre-registered protocol (``policies/protocol.yaml``, issue 21) end to end,
resumably, at one of its scales:

    molmomotion experiment protocol --scale local --encoders results/protocol-encoders \
        --out results/policy-protocol-local

1. The choices (protocol ``choices:``), one at a time in the file's order, each with the earlier ones fixed, at every
   training seed of the scale, on the validation suite only. A training-time choice (state_noise, lr_schedule) trains
   ``applies_to`` with each candidate (one success-rate experiment folder per training recipe, named by the recipe, all
   sharing ``demos/``; the scale's whole step grid, so the chosen folder already holds the final runs) and evaluates
   the final step; an evaluation-time choice (execute_steps, forecaster_fm_steps) evaluates the chosen recipe's final
   checkpoints with each candidate. The pick: the best of ``by`` (the mean validation success of A, B and C with
   equal weights, or one variant's), compared exactly; ties go to the first candidate listed.
2. With every choice fixed (:class:`ChoicesPendingError` otherwise), the chosen folder's checkpoints at every step of
   the grid on the test suite (its reserved seeds only: :class:`SuiteMisuseError`) and the OOD suite, the scale's
   other variants, geometric-input ablations and encoder settings trained with the chosen recipe first.
3. ``protocol_run.json`` (protocol sha256 and version, scale, overrides, every candidate's validation success per
   variant and seed and each pick, folders, wall times), ``choices.md``, and ``experiment report`` of the test and OOD
   evaluations into ``report-test/`` and ``report-ood/`` (``-<setting>`` for the full scale's other settings).

Into ``out``:

  demos/                               the demonstrations every recipe shares (ExperimentConfig.demo_cache)
  recipes/<recipe>[-<setting>]/        a success-rate experiment folder per recipe (evals/<tag>/ per suite)
  protocol_run.json, choices.md        the record
  report-test*/, report-ood*/          the reports

A second call (or one after a kill) re-runs nothing finished (the experiment's resume semantics) and never decides
again: a stored pick is kept, and stored validation numbers that disagree with the evaluation files on disk are
refused (:class:`DecisionMismatchError`), as is a folder made under another plan (scale, overrides, protocol file).
:class:`ProtocolRunSettings` overrides (a tiny run for tests) are recorded as not the protocol's settings.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from molmomotion_sim.seeds import SPLITS

from .demos import FAMILIES
from .experiment import ExperimentConfig, run_experiment
from .model import PROTOCOL_ENCODERS, VARIANTS
from .observation import PolicyError
from .protocol import Protocol

log = logging.getLogger(__name__)

RECORD = "protocol_run.json"
CHOICES_TABLE = "choices.md"
PLAN_SCHEMA = 1
# How each choice the protocol may name sets the experiment: (kind, the ExperimentConfig fields of a candidate).
TRAINING, EVALUATION, NOT_RUN = "training", "evaluation", "none"
CHOICE_FIELDS: dict[str, tuple[str, Callable[[Any], dict]]] = {
    "state_noise": (TRAINING, lambda c: {"state_noise_m": float(c[0]), "state_noise_rad": float(c[1])}),
    "lr_schedule": (TRAINING, lambda c: {"lr_schedule": str(c)}),
    "execute_steps": (EVALUATION, lambda c: {"execute_steps": int(c)}),
    "forecaster_fm_steps": (EVALUATION, lambda c: {"forecast_fm_steps": int(c)}),
}
MEAN_RULE = "mean_validation_success"
ONE_VARIANT_RULE = "validation_success_of_"
GEOMETRIC_FIELDS = ("footprint", "geometry_skip")  # the PolicyConfig switches protocol `geometric_inputs` may name
ENCODER_TRAINING_FIELDS = {"finetune": "finetune", "encoder_lr": "encoder_lr"}


class ProtocolRunError(PolicyError):
    """The protocol cannot be run as asked (a choice or scale it cannot execute, a folder made under another plan)."""


class ChoicesPendingError(ProtocolRunError):
    """The test or OOD suite was asked for before every choice was decided."""


class SuiteMisuseError(ProtocolRunError):
    """A choice would read a suite other than validation, or a suite's seeds leave its reserved range."""


class DecisionMismatchError(ProtocolRunError):
    """A stored decision's validation numbers disagree with the evaluation files on disk."""


@dataclass(frozen=True)
class ProtocolRunSettings:
    """Overrides of the scale's numbers for tests and smoke runs (None: the protocol's). Episodes are a prefix of each
    suite's seeds; a run with any override is recorded as not the protocol's."""

    steps: tuple[int, ...] | None = None  # the step grid
    seeds: int | None = None  # training seeds 0..seeds-1
    episodes: int | None = None  # per family, of the validation, test and OOD suites alike
    train_episodes: int | None = None  # demonstrations per family (train split)
    val_episodes: int | None = None  # demonstrations per family (validation split: the offline curve)
    families: tuple[str, ...] | None = None
    max_samples: int | None = None
    batch_size: int | None = None
    eval_every: int | None = None
    replicates: int | None = None  # the reports' bootstrap replicates

    def overrides(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Choice:
    name: str
    kind: str  # training | evaluation | none
    candidates: tuple
    applies_to: tuple[str, ...]  # the scale's variants it is judged on
    by: str

    def fields(self, candidate) -> dict:
        return CHOICE_FIELDS[self.name][1](candidate) if self.kind != NOT_RUN else {}


@dataclass(frozen=True)
class Setting:
    """One group of training runs the test suite evaluates: an encoder training and geometric inputs on or off."""

    encoder_training: str  # frozen | finetune_last_blocks (protocol `encoder_training`)
    geometric: bool
    variants: tuple[str, ...]  # experiment variants (A, B, C, D)
    protocol_variants: tuple[str, ...]  # the protocol's names (A_geo for A with geometric inputs)

    @property
    def name(self) -> str:
        return self.encoder_training + ("-geo" if self.geometric else "")


@dataclass
class ProtocolRunResult:
    record: dict
    files: dict[str, Path] = field(default_factory=dict)


# --- reading the protocol --------------------------------------------------------------------------------
def parse_choices(protocol: Protocol, variants: tuple[str, ...]) -> list[Choice]:
    """The protocol's choices in the file's order; a choice this runner cannot execute is a ProtocolRunError."""
    choices = []
    for name, spec in (protocol.raw.get("choices") or {}).items():
        if not isinstance(spec, dict) or not {"candidates", "applies_to", "by"} <= set(spec):
            raise ProtocolRunError(f"choices.{name}: give candidates, applies_to and by")
        candidates = tuple(tuple(c) if isinstance(c, list) else c for c in spec["candidates"])
        by = str(spec["by"])
        if by == "none":
            choices.append(Choice(str(name), NOT_RUN, candidates, (), by))
            continue
        if name not in CHOICE_FIELDS:
            raise ProtocolRunError(f"choices.{name}: this runner knows how to run {', '.join(CHOICE_FIELDS)} only")
        if not candidates:
            raise ProtocolRunError(f"choices.{name}: no candidates")
        judged = tuple(v for v in spec["applies_to"] if v in variants)
        if by.startswith(ONE_VARIANT_RULE):
            judged = tuple(v for v in (by[len(ONE_VARIANT_RULE):],) if v in variants)
        elif by != MEAN_RULE:
            raise ProtocolRunError(f"choices.{name}.by: {MEAN_RULE}, {ONE_VARIANT_RULE}<variant> or none, got {by!r}")
        if not judged:
            raise ProtocolRunError(f"choices.{name}: none of the variants it is judged on runs at this scale")
        choices.append(Choice(str(name), CHOICE_FIELDS[name][0], candidates, judged, by))
    return choices


def experiment_variant(protocol: Protocol, name: str) -> str:
    """The experiment variant (A-D) with the protocol variant's encoder role and forecast input."""
    spec = protocol.variants[name]
    role = {v: k for k, v in PROTOCOL_ENCODERS.items()}.get(spec.encoder, spec.encoder)
    for variant, fields in VARIANTS.items():
        if (fields["encoder_init"], fields["forecast_conditioning"]) == (role, spec.forecast_input):
            return variant
    raise ProtocolRunError(f"variants.{name}: no policy variant reads encoder {spec.encoder!r} with forecast input "
                           f"{spec.forecast_input}")


def settings_of(protocol: Protocol, scale: str) -> list[Setting]:
    """The scale's groups of runs, the one the choices are made on (first encoder training, no geometric inputs)
    first."""
    spec = protocol.scales[scale]
    out = []
    for training in spec.encoder_training:
        for geometric in (False, True):
            names = tuple(v for v in spec.variants if protocol.variants[v].geometric_inputs == geometric)
            if names:
                out.append(Setting(training, geometric, tuple(experiment_variant(protocol, v) for v in names), names))
    if out[0].geometric or "A" not in out[0].variants:
        raise ProtocolRunError(f"scales.{scale}: the choices need variants without geometric inputs")
    return out


# --- the run ---------------------------------------------------------------------------------------------
class ProtocolRun:
    """One scale of the protocol into ``out``: :meth:`decide` (the choices), :meth:`run_final_suites` (test, OOD),
    :meth:`write_records`; :func:`run_protocol` runs all three."""

    def __init__(self, protocol: Protocol, scale: str, encoders_dir: str | Path, out: str | Path,
                 settings: ProtocolRunSettings = ProtocolRunSettings(), executor=None, progress: bool = True,
                 echo: Callable[[str], None] | None = None, train_gpus: float | str = "auto",
                 episodes_per_batch: int | None = None):
        if scale not in protocol.scales:
            raise ProtocolRunError(f"unknown scale {scale!r}; the protocol declares {', '.join(protocol.scales)}")
        self.protocol, self.scale, self.settings = protocol, protocol.scales[scale], settings
        self.encoders_dir = Path(encoders_dir).expanduser().resolve()
        missing = [n for n in PROTOCOL_ENCODERS.values() if not (self.encoders_dir / f"{n}.pt").is_file()]
        if missing:
            raise ProtocolRunError(f"{self.encoders_dir} lacks {', '.join(m + '.pt' for m in missing)} (made by "
                                   "`molmomotion experiment pretrain --out DIR`)")
        self.out = Path(out).expanduser().resolve()
        self.executor, self.progress, self.say = executor, progress, echo or log.info
        self.train_gpus, self.episodes_per_batch = train_gpus, episodes_per_batch
        self.setting_list = settings_of(protocol, scale)
        self.choices = parse_choices(protocol, self.setting_list[0].protocol_variants)
        self.record = self._open_record()
        self.counts = {"experiments": 0, "training_runs_run": 0, "cells_run": 0, "episodes_run": 0}

    # --- plan and record ---
    def _plan(self) -> dict:
        """What a folder's decisions were made under (places excluded: the folder may move)."""
        plan = {"schema": PLAN_SCHEMA, "protocol_sha256": self.protocol.sha256, "scale": self.scale.name,
                "overrides": self.settings.overrides(),
                "base_config": self.base_config().to_dict() | {"demo_cache": None, "encoders_dir": None}}
        return json.loads(json.dumps(plan))

    def _open_record(self) -> dict:
        path = self.out / RECORD
        plan = self._plan()
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("plan") != plan:
                raise ProtocolRunError(f"{self.out} holds a protocol run made under another plan (protocol file, "
                                       "scale or overrides); choose another --out")
            return record
        overrides = self.settings.overrides()
        return {"protocol": {"path": str(self.protocol.path), "sha256": self.protocol.sha256,
                             "version": self.protocol.version},
                "scale": self.scale.name, "protocol_settings": not overrides, "overrides": overrides,
                "note": ("overrides: NOT the protocol's settings (a smoke or test run)" if overrides else
                         "the protocol's settings"),
                "plan": plan, "encoders_dir": str(self.encoders_dir), "choices": {}, "suites": {}, "calls": []}

    def _save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{RECORD}.tmp"
        tmp.write_text(json.dumps(self.record, indent=1) + "\n")
        tmp.replace(self.out / RECORD)

    # --- configs ---
    def base_config(self) -> ExperimentConfig:
        """The recipe at the scale (overrides applied), evaluated on the validation suite; no choice made yet."""
        p, s = self.protocol, self.settings
        recipe = p.raw.get("recipe") or {}
        demos = p.raw.get("demonstrations") or {}
        for key, split in (("train", "train"), ("validation", "validation")):
            if p.demonstrations[key].start != SPLITS[split].start:
                raise ProtocolRunError(f"demonstrations.{key} must start at the {split} split's first seed "
                                       f"{SPLITS[split].start} (the experiment records from there)")
        return ExperimentConfig(
            variants=self.setting_list[0].variants, steps=tuple(s.steps or self.scale.steps),
            seeds=s.seeds or self.scale.training_seeds, families=tuple(s.families or p.families or FAMILIES),
            train_episodes_per_family=s.train_episodes or p.demonstrations["train"].count,
            val_episodes_per_family=s.val_episodes or p.demonstrations["validation"].count,
            frames_every=int(demos.get("frames_every", 2)), batch_size=s.batch_size or int(recipe["batch_size"]),
            lr=float(recipe["lr"]), lr_schedule=str(recipe["lr_schedule"]),
            state_noise_m=float(recipe["state_noise_m"]), state_noise_rad=float(recipe["state_noise_rad"]),
            max_samples=s.max_samples or int(recipe["max_samples"]),
            eval_every=s.eval_every or ExperimentConfig.eval_every,
            demo_cache=str(self.out / "demos"), encoders_dir=str(self.encoders_dir),
            **self.suite_fields("validation"))

    def suite_fields(self, suite: str) -> dict:
        """The ExperimentConfig fields of one of the protocol's suites at the scale; a suite's seeds must lie in its
        reserved range (the test suite's: untouched by anything else)."""
        spec = self.protocol.suites[suite]
        count = self.settings.episodes or {"validation": self.scale.validation_per_family,
                                           "test": self.scale.test_per_family, "ood": self.scale.ood_per_family}[suite]
        first, stop = spec.seeds.start, spec.seeds.start + count
        if spec.reserved is not None and not (spec.reserved.start <= first and stop <= spec.reserved.stop):
            raise SuiteMisuseError(f"the {suite} suite's seeds {first}-{stop - 1} leave its reserved range "
                                   f"{spec.reserved.start}-{spec.reserved.stop - 1}")
        return {"eval_split": spec.split, "eval_seed_start": first, "eval_suite": spec.options,
                "episodes_per_family": count}

    def chosen_fields(self) -> dict:
        """Every decided choice's fields, in order."""
        fields: dict = {}
        for choice in self.choices:
            stored = self.record["choices"].get(choice.name)
            if stored is not None and choice.kind != NOT_RUN:
                fields |= choice.fields(_candidate(stored["pick"]))
        return fields

    def recipe_folder(self, cfg: ExperimentConfig, setting: Setting | None = None) -> Path:
        name = f"noise{cfg.state_noise_m:g}-{cfg.state_noise_rad:g}-{cfg.lr_schedule}"
        if setting is not None and setting != self.setting_list[0]:
            name += f"-{setting.name}"
        return self.out / "recipes" / name

    # --- one experiment call ---
    def _experiment(self, cfg: ExperimentConfig, folder: Path, evaluate_steps: tuple[int, ...] | None) -> dict:
        result = run_experiment(cfg, folder, progress=self.progress, executor=self.executor, resume=True,
                                episodes_per_batch=self.episodes_per_batch, train_gpus=self.train_gpus,
                                evaluate_steps=evaluate_steps, echo=lambda line: self.say(f"{folder.name}: {line}"))
        execution = result.execution
        self.counts["experiments"] += 1
        self.counts["training_runs_run"] += execution["training_runs"]["run"]
        self.counts["cells_run"] += execution["cells"]["run"]
        self.counts["episodes_run"] += execution["episodes_run"]
        return result.summary

    def validation_success(self, cfg: ExperimentConfig, folder: Path, variants: tuple[str, ...]) -> dict:
        """Per variant, the validation success of the final step's checkpoints: rate, successes, n, per seed. Only
        ever the validation suite (a SuiteMisuseError otherwise)."""
        validation = self.protocol.suites["validation"]
        if (cfg.eval_split, cfg.eval_seed_start) != (validation.split, validation.seeds.start):
            raise SuiteMisuseError(f"a choice reads the validation suite only, not {cfg.eval_split} seeds from "
                                   f"{cfg.eval_seed_start}")
        final = cfg.steps[-1]
        summary = self._experiment(replace(cfg, variants=variants), folder, (final,))
        rows = {r["variant"]: r for r in summary["rows"] if r["step"] == final}
        return {v: {"rate": rows[v]["rate"], "successes": rows[v]["successes"], "n": rows[v]["n"],
                    "per_seed": rows[v]["per_seed"]} for v in variants}

    # --- 1. the choices ---
    def decide(self) -> dict:
        """Every choice in order; returns the chosen ExperimentConfig fields."""
        for number, choice in enumerate(self.choices, 1):
            stored = self.record["choices"].get(choice.name)
            if choice.kind == NOT_RUN:
                self.record["choices"][choice.name] = {"order": number, "kind": NOT_RUN, "by": choice.by,
                                                       "candidates": list(choice.candidates),
                                                       "pick": _jsonable(choice.candidates[0]) if choice.candidates
                                                       else None, "note": "not chosen: every step is reported"}
                continue
            started = time.perf_counter()
            fixed = self.chosen_fields_before(choice)
            self.say(f"choice {number}/{len(self.choices)} {choice.name} ({choice.kind}, by {choice.by} of "
                     f"{', '.join(choice.applies_to)}): {len(choice.candidates)} candidates"
                     + (" (decided before: checking its numbers)" if stored else ""))
            candidates, scores = [], []
            for candidate in choice.candidates:
                # A training-time candidate trains its recipe's folder (named by the recipe, so a candidate equal to
                # an earlier pick reuses its runs); an evaluation-time one reads the chosen recipe's checkpoints.
                cfg = replace(self.base_config(), **fixed, **choice.fields(candidate))
                folder = self.recipe_folder(cfg)
                success = self.validation_success(cfg, folder, choice.applies_to)
                score = _score(success, choice.applies_to)
                scores.append(score)
                candidates.append({"value": _jsonable(candidate), "folder": str(folder.relative_to(self.out)),
                                   "eval_tag": cfg.eval_tag(), "validation": success, "score": float(score)})
                self.say(f"  {choice.name}={_jsonable(candidate)}: validation success "
                         + ", ".join(f"{v} {s['successes']}/{s['n']}" for v, s in success.items())
                         + f" (score {float(score):.3f})")
            pick = pick_candidate(scores)
            decision = {"order": number, "kind": choice.kind, "by": choice.by, "applies_to": list(choice.applies_to),
                        "fixed": fixed, "candidates": candidates, "pick": candidates[pick]["value"],
                        "pick_index": pick, "wall_s": round(time.perf_counter() - started, 3)}
            if stored is not None:
                if _numbers(stored) != _numbers(decision) or stored.get("fixed") != decision["fixed"]:
                    raise DecisionMismatchError(f"choice {choice.name}: the validation numbers stored in {RECORD} "
                                                "disagree with the evaluation files on disk; not deciding again (move "
                                                "the folder away to start over)")
                decision = {**decision, "pick": stored["pick"], "pick_index": stored["pick_index"],
                            "wall_s": stored.get("wall_s")}
            self.record["choices"][choice.name] = decision
            self._save()
            self.say(f"  picked {choice.name}={decision['pick']}")
        return self.chosen_fields()

    def chosen_fields_before(self, choice: Choice) -> dict:
        fields: dict = {}
        for earlier in self.choices[:self.choices.index(choice)]:
            if earlier.kind != NOT_RUN:
                fields |= earlier.fields(_candidate(self.record["choices"][earlier.name]["pick"]))
        return fields

    def undecided(self) -> list[str]:
        return [c.name for c in self.choices if c.name not in self.record["choices"]]

    # --- 2. the test and OOD suites ---
    def run_final_suites(self) -> dict:
        """Every setting's runs with the chosen recipe, every step of the grid, on the test and the OOD suite."""
        pending = self.undecided()
        if pending:
            raise ChoicesPendingError(f"the test suite runs once, after every choice; undecided: {', '.join(pending)}")
        suites = [s for s in ("test", "ood") if s in self.protocol.suites
                  and (self.settings.episodes or getattr(self.scale, f"{s}_per_family"))]
        fields = {name: self.suite_fields(name) for name in suites}  # every suite's seeds checked before any runs
        chosen = self.chosen_fields()
        for setting in self.setting_list:
            base = replace(self.base_config(), **chosen, variants=setting.variants, **self._setting_fields(setting))
            folder = self.recipe_folder(base, setting)
            for suite in suites:
                started = time.perf_counter()
                cfg = replace(base, **fields[suite])
                assert cfg.eval_split != "validation" and not self.undecided()  # never a choice's suite
                self.say(f"{suite} suite, {setting.name}: {', '.join(setting.protocol_variants)} at steps "
                         f"{', '.join(map(str, cfg.steps))}, seeds {cfg.eval_seeds()[0]}.. ({cfg.episodes_per_family} "
                         "per family)")
                self._experiment(cfg, folder, None)
                self.record["suites"].setdefault(suite, {})[setting.name] = {
                    "folder": str(folder.relative_to(self.out)), "eval_tag": cfg.eval_tag(),
                    "variants": dict(zip(setting.protocol_variants, setting.variants, strict=True)),
                    "seeds": [cfg.eval_seeds()[0], cfg.eval_seeds()[-1]],
                    "episodes_per_family": cfg.episodes_per_family,
                    "steps": list(cfg.steps), "wall_s": round(time.perf_counter() - started, 3)}
                self._save()
        return self.record["suites"]

    def _setting_fields(self, setting: Setting) -> dict:
        spec = (self.protocol.raw.get("encoder_training") or {}).get(setting.encoder_training) or {}
        fields = {"finetune": spec.get("finetune", "none")}
        if "encoder_lr" in spec:
            fields["encoder_lr"] = float(spec["encoder_lr"])
        if setting.geometric:
            switches = list(self.protocol.raw.get("geometric_inputs") or [])
            unknown = [s for s in switches if s not in GEOMETRIC_FIELDS]
            if unknown or not switches:
                raise ProtocolRunError(f"geometric_inputs: {GEOMETRIC_FIELDS} only, got {switches}")
            fields |= {s: True for s in switches}
        return fields

    # --- 3. the records ---
    def write_records(self) -> dict[str, Path]:
        from .report import build_report, write_report

        files = {"record": self.out / RECORD, "choices": self.out / CHOICES_TABLE}
        files["choices"].write_text(choices_markdown(self.record))
        reports = {}
        for suite, by_setting in self.record["suites"].items():
            for name, entry in by_setting.items():
                directory = self.out / entry["folder"] / "evals" / entry["eval_tag"]
                target = self.out / (f"report-{suite}" + ("" if name == self.setting_list[0].name else f"-{name}"))
                report = build_report(directory, self.protocol, replicates=self.settings.replicates,
                                      display_dir=str(directory.relative_to(self.out)))
                write_report(report, target)
                reports[f"{suite}/{name}"] = str(target.relative_to(self.out))
                files[f"report-{suite}-{name}"] = target
        self.record["reports"] = reports
        self._save()
        return files


def run_protocol(protocol: Protocol, scale: str, encoders_dir: str | Path, out: str | Path,
                 settings: ProtocolRunSettings = ProtocolRunSettings(), executor=None, progress: bool = True,
                 echo: Callable[[str], None] | None = None, train_gpus: float | str = "auto",
                 episodes_per_batch: int | None = None) -> ProtocolRunResult:
    """The choices, then the test and OOD suites, then the records and reports (the module docstring)."""
    started = time.perf_counter()
    run = ProtocolRun(protocol, scale, encoders_dir, out, settings, executor, progress, echo, train_gpus,
                      episodes_per_batch)
    run._save()
    run.decide()
    run.run_final_suites()
    run.record["chosen"] = run.chosen_fields()
    run.record["calls"].append({"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                **run.counts, "executor": getattr(run.executor, "name", "local"),
                                "wall_s": round(time.perf_counter() - started, 3)})
    files = run.write_records()
    return ProtocolRunResult(run.record, files)


# --- pieces ----------------------------------------------------------------------------------------------
def pick_candidate(scores: list[Fraction]) -> int:
    """The index of the best score; a tie goes to the first candidate listed."""
    best = 0
    for index, score in enumerate(scores):
        if score > scores[best]:
            best = index
    return best


def _score(success: dict, variants: tuple[str, ...]) -> Fraction:
    """The mean of the variants' validation success (each pooled over seeds and scenes), equal weights, exact."""
    return sum((Fraction(success[v]["successes"], success[v]["n"]) for v in variants), Fraction(0)) / len(variants)


def _numbers(decision: dict) -> list:
    return json.loads(json.dumps([(c["value"], c["validation"]) for c in decision["candidates"]]))


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _candidate(value):
    return tuple(value) if isinstance(value, list) else value


def _per_seed(rates: list) -> str:
    return ", ".join("–" if r is None else f"{r:.0%}" for r in rates)


def choices_markdown(record: dict) -> str:
    """The choices as a table: each candidate's validation success per variant (and per seed), its score, the pick."""
    lines = [f"# Choices on the validation suite: protocol version {record['protocol']['version']}, scale "
             f"{record['scale']}", "", f"Protocol sha256 `{record['protocol']['sha256'][:12]}`; {record['note']}"
             + (f": {json.dumps(record['overrides'])}" if record["overrides"] else "") + ".", "",
             "Made one at a time in this order, each with the earlier ones fixed; ties go to the first candidate.", "",
             "| # | choice | by | candidate | validation success per variant (per seed) | score | picked |",
             "|---|---|---|---|---|---|---|"]
    for name, decision in sorted(record["choices"].items(), key=lambda kv: kv[1]["order"]):
        if decision["kind"] == NOT_RUN:
            lines.append(f"| {decision['order']} | {name} | none | {decision['pick']} | {decision['note']} | | |")
            continue
        for index, c in enumerate(decision["candidates"]):
            cells = "; ".join(f"{v} {s['successes']}/{s['n']} ({_per_seed(s['per_seed'])})"
                              for v, s in c["validation"].items())
            picked = "**yes**" if index == decision["pick_index"] else ""
            lines.append(f"| {decision['order']} | {name} | {decision['by']} | `{json.dumps(c['value'])}` | {cells} | "
                         f"{c['score']:.3f} | {picked} |")
    return "\n".join(lines) + "\n"


__all__ = ["ChoicesPendingError", "DecisionMismatchError", "ProtocolRun", "ProtocolRunError", "ProtocolRunResult",
           "ProtocolRunSettings", "SuiteMisuseError", "choices_markdown", "parse_choices", "pick_candidate",
           "run_protocol"]
