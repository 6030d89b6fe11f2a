"""``molmomotion experiment protocol`` (issue 21) on a tiny run with tiny protocol encoders: the choices in order on the
validation suite (ties to the first candidate), the test and OOD suites once afterwards, the records and reports, a
second call that runs nothing, decisions never made again, the guard that keeps the test suite out of the choices."""

import copy
import json
import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from molmomotion_policies.agent import AgentConfig, PolicyAgent
from molmomotion_policies.controller import FORECAST_FM_STEPS
from molmomotion_policies.experiment import ExperimentConfig, cell_hash
from molmomotion_policies.protocol import load_protocol, parse_protocol
from molmomotion_policies.protocol_run import (
    ChoicesPendingError,
    DecisionMismatchError,
    ProtocolRun,
    ProtocolRunError,
    ProtocolRunSettings,
    SuiteMisuseError,
    parse_choices,
    pick_candidate,
    run_protocol,
)
from molmomotion_ros.cli import main as molmomotion
from molmomotion_ros.forecasting.pipeline import PIPELINE_FM_STEPS

TINY_FLAGS = ["--steps", "5,10", "--seeds", "2", "--episodes", "1", "--train-episodes", "1", "--val-episodes", "1",
              "--families", "push", "--max-samples", "8", "--batch-size", "8", "--eval-every", "5",
              "--replicates", "200", "--workers", "1", "--no-progress"]
TINY = ProtocolRunSettings(steps=(5, 10), seeds=2, episodes=1, train_episodes=1, val_episodes=1, families=("push",),
                           max_samples=8, batch_size=8, eval_every=5, replicates=200)
ORDER = ["state_noise", "lr_schedule", "execute_steps", "forecaster_fm_steps", "checkpoint"]


@pytest.fixture(scope="module")
def protocol_run(pretrained, tmp_path_factory):
    """The whole command on the tiny settings (~1 min on one core): (out folder, encoders folder, its record)."""
    _, encoders = pretrained
    out = tmp_path_factory.mktemp("protocol") / "run"
    status = molmomotion(["experiment", "protocol", "--scale", "local", "--encoders", str(encoders),
                          "--out", str(out), *TINY_FLAGS])
    assert status == 0
    return out, encoders, json.loads((out / "protocol_run.json").read_text())


def _cells(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*-s*-*.json") if p.parent.parent.name == "evals")


def test_the_tiny_run_completes_and_records_the_protocol_and_its_overrides(protocol_run):
    out, encoders, record = protocol_run
    protocol = load_protocol()
    assert record["protocol"] == {"path": str(protocol.path), "sha256": protocol.sha256, "version": protocol.version}
    assert record["scale"] == "local" and record["encoders_dir"] == str(encoders)
    assert record["protocol_settings"] is False and "NOT the protocol's settings" in record["note"]
    assert record["overrides"]["steps"] == [5, 10] and record["overrides"]["episodes"] == 1
    assert list(record["choices"]) == ORDER
    picks = {name: record["choices"][name]["pick"] for name in ORDER}
    assert record["chosen"] == {"state_noise_m": picks["state_noise"][0], "state_noise_rad": picks["state_noise"][1],
                                "lr_schedule": picks["lr_schedule"], "execute_steps": picks["execute_steps"],
                                "forecast_fm_steps": picks["forecaster_fm_steps"]}
    call = record["calls"][0]
    assert call["training_runs_run"] == 18  # A, B, C x 2 seeds x 3 recipes (the lr_schedule's first reuses one)
    assert call["wall_s"] > 0 and all(d.get("wall_s", 0) >= 0 for d in record["choices"].values())
    table = (out / "choices.md").read_text()
    assert "| 1 | state_noise | mean_validation_success | `[0.015, 0.1]` |" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[1] for row in rows] == ["state_noise"] * 2 + ["lr_schedule"] * 2 + [
        "execute_steps"] * 3 + ["forecaster_fm_steps"] * 2 + ["checkpoint"]
    assert sum("**yes**" in row for row in rows) == 4
    for suite, split in (("test", "test"), ("ood", "ood")):
        report = json.loads((out / f"report-{suite}" / "report.json").read_text())
        assert [(g["split"], len(g["cells"])) for g in report["groups"]] == [(split, 6)]  # A, B, C at 5 and 10
        assert (out / f"report-{suite}" / "report.md").read_text().startswith("# Success-rate experiment")
    assert record["reports"] == {"test/frozen": "report-test", "ood/frozen": "report-ood"}


def test_choices_are_made_in_order_with_the_earlier_ones_fixed_and_ties_to_the_first(protocol_run):
    out, _, record = protocol_run
    choices = record["choices"]
    assert [choices[name]["order"] for name in ORDER] == [1, 2, 3, 4, 5]
    for name in ORDER[:4]:
        decision = choices[name]
        scores = [Fraction(sum(Fraction(s["successes"], s["n"]) for s in c["validation"].values()))
                  / len(c["validation"]) for c in decision["candidates"]]
        assert decision["pick_index"] == scores.index(max(scores))  # the first of the best
        assert decision["pick"] == decision["candidates"][decision["pick_index"]]["value"]
        judged = ["C"] if name == "forecaster_fm_steps" else ["A", "B", "C"]
        for candidate in decision["candidates"]:
            assert list(candidate["validation"]) == judged
            for success in candidate["validation"].values():
                assert success["n"] == 2 and len(success["per_seed"]) == 2  # every training seed, 1 episode each
    noise = choices["state_noise"]["pick"]
    assert choices["state_noise"]["fixed"] == {}
    assert choices["lr_schedule"]["fixed"] == {"state_noise_m": noise[0], "state_noise_rad": noise[1]}
    for candidate in choices["lr_schedule"]["candidates"]:  # trained with the picked state noise
        stored = json.loads((out / candidate["folder"] / "experiment_config.json").read_text())
        assert (stored["state_noise_m"], stored["state_noise_rad"], stored["lr_schedule"]) == (
            noise[0], noise[1], candidate["value"])
        assert stored["steps"] == [5, 10]  # the whole grid: the chosen folder holds the final runs
    chosen_folder = choices["lr_schedule"]["candidates"][choices["lr_schedule"]["pick_index"]]["folder"]
    assert {c["folder"] for c in choices["execute_steps"]["candidates"]} == {chosen_folder}  # no training
    assert [c["eval_tag"] for c in choices["execute_steps"]["candidates"]] == [
        f"main-validation-105000-n1-x{k}" for k in (4, 2, 8)]
    steps = choices["execute_steps"]["pick"]
    assert choices["forecaster_fm_steps"]["fixed"]["execute_steps"] == steps
    assert [c["eval_tag"] for c in choices["forecaster_fm_steps"]["candidates"]] == [
        f"main-validation-105000-n1-x{steps}", f"main-validation-105000-n1-x{steps}-fm10"]
    assert choices["checkpoint"]["kind"] == "none" and choices["checkpoint"]["pick"] == "grid"


def test_pick_candidate_is_exact_and_gives_ties_to_the_first():
    assert pick_candidate([Fraction(1, 2), Fraction(1, 2)]) == 0
    assert pick_candidate([Fraction(0), Fraction(1, 3), Fraction(1, 3)]) == 1
    thirds = sum((Fraction(1, 3),) * 3, Fraction(0))
    assert pick_candidate([Fraction(1), thirds]) == 0  # 1/3 + 1/3 + 1/3 is exactly 1: a tie, not a float wobble
    assert pick_candidate([Fraction(2, 5), Fraction(3, 5), Fraction(1, 5)]) == 1


def test_test_and_ood_evaluations_lie_under_their_tags_and_nothing_else_saw_a_test_seed(protocol_run):
    out, _, record = protocol_run
    folder = out / record["suites"]["test"]["frozen"]["folder"]
    for suite, tag, first, options in (("test", "main-test-112000-n1-x4", 112000, "main"),
                                       ("ood", "ood-ood-122000-n1-x4", 122000, "ood")):
        entry = record["suites"][suite]["frozen"]
        assert (entry["eval_tag"], entry["seeds"], entry["steps"]) == (tag, [first, first], [5, 10])
        files = sorted((folder / "evals" / tag).glob("*-s*-*.json"))
        assert [p.name for p in files] == [f"{v}-s{s}-{step:06d}.json" for v in "ABC" for s in (0, 1)
                                           for step in (5, 10)]
        for path in files:
            document = json.loads(path.read_text())
            assert [e["seed"] for e in document["episodes"]] == [first]
            assert document["meta"]["suite"] == options
    protocol = load_protocol()
    test_range = protocol.suites["test"].reserved
    for path in _cells(out):
        seeds = [e["seed"] for e in json.loads(path.read_text())["episodes"]]
        if path.parent.name.startswith("main-validation-"):
            assert all(105000 <= s < 110000 for s in seeds), path  # the choices read validation seeds only
        elif any(test_range.start <= s < test_range.stop for s in seeds):
            assert path.parent.name == "main-test-112000-n1-x4", path


def test_a_second_call_runs_nothing_and_keeps_every_decision(protocol_run):
    out, encoders, record = protocol_run
    cells = _cells(out)
    checkpoints = sorted(out.rglob("step-*.pt"))
    stamps = [p.stat().st_mtime_ns for p in (*cells, *checkpoints)]
    # Validation: 5 distinct candidate evaluations of A-C (2 noises, cosine, x2, x8; lr constant and x4 are the
    # picks before them) and one of C (fm10); then the test and OOD suites: 6 runs x 2 steps each.
    assert len(cells) == 6 * 5 + 2 + 12 * 2 == record["calls"][0]["cells_run"]
    again = run_protocol(load_protocol(), "local", encoders, out, TINY, progress=False)
    call = again.record["calls"][-1]
    assert (call["training_runs_run"], call["cells_run"], call["episodes_run"]) == (0, 0, 0)
    assert call["experiments"] == record["calls"][0]["experiments"]  # every step was visited, and skipped
    assert [p.stat().st_mtime_ns for p in (*cells, *checkpoints)] == stamps
    assert again.record["choices"] == record["choices"]


def test_decisions_are_never_made_again_differently(protocol_run, tmp_path):
    out, encoders, _ = protocol_run
    copied = tmp_path / "run"
    shutil.copytree(out, copied)
    with pytest.raises(ProtocolRunError, match="another plan"):
        run_protocol(load_protocol(), "local", encoders, copied, ProtocolRunSettings(**{**TINY.__dict__, "seeds": 3}),
                     progress=False)
    # One validation episode's outcome on disk changed under the stored decision: refused, not re-decided.
    record = json.loads((copied / "protocol_run.json").read_text())
    first = record["choices"]["state_noise"]["candidates"][1]
    cell = copied / first["folder"] / "evals" / first["eval_tag"] / "A-s0-000010.json"
    document = json.loads(cell.read_text())
    document["episodes"][0]["success"] = not document["episodes"][0]["success"]
    cell.write_text(json.dumps(document))
    with pytest.raises(DecisionMismatchError, match="state_noise"):
        run_protocol(load_protocol(), "local", encoders, copied, TINY, progress=False)


def test_the_test_suite_cannot_run_before_every_choice(pretrained, tmp_path):
    _, encoders = pretrained
    run = ProtocolRun(load_protocol(), "local", encoders, tmp_path / "run", TINY, progress=False)
    with pytest.raises(ChoicesPendingError, match="state_noise, lr_schedule, execute_steps, forecaster_fm_steps"):
        run.run_final_suites()
    assert not (tmp_path / "run" / "recipes").exists()  # refused before any training or episode
    base = run.base_config()
    assert (base.eval_split, base.eval_seeds()) == ("validation", [105000])
    with pytest.raises(SuiteMisuseError, match="validation suite only"):  # a choice never reads the test suite
        run.validation_success(replace_suite(base, "test", 112000), tmp_path / "x", ("A",))
    assert not (tmp_path / "x").exists()
    # Test seeds must lie in the protocol's reserved range (112000-112999).
    wide = ProtocolRun(load_protocol(), "local", encoders, tmp_path / "wide",
                       ProtocolRunSettings(**{**TINY.__dict__, "episodes": 1001}), progress=False)
    with pytest.raises(SuiteMisuseError, match="reserved range 112000-112999"):
        wide.suite_fields("test")
    assert run.suite_fields("test") == {"eval_split": "test", "eval_seed_start": 112000, "eval_suite": "main",
                                        "episodes_per_family": 1}


def replace_suite(cfg: ExperimentConfig, split: str, start: int) -> ExperimentConfig:
    from dataclasses import replace

    return replace(cfg, eval_split=split, eval_seed_start=start)


def test_choices_the_runner_cannot_execute_are_refused():
    protocol = load_protocol()
    assert [c.name for c in parse_choices(protocol, ("A", "B", "C"))] == ORDER
    raw = copy.deepcopy(protocol.raw)
    raw["choices"] = {"dropout": {"candidates": [0.0, 0.1], "applies_to": ["A"], "by": "mean_validation_success"}}
    with pytest.raises(ProtocolRunError, match="knows how to run"):
        parse_choices(parse_protocol(raw), ("A", "B", "C"))
    raw["choices"] = {"execute_steps": {"candidates": [4], "applies_to": ["A"], "by": "test_success"}}
    with pytest.raises(ProtocolRunError, match="by"):
        parse_choices(parse_protocol(raw), ("A", "B", "C"))


def test_the_help_and_the_protocols_scale_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        molmomotion(["experiment", "protocol", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--scale NAME", "--encoders DIR", "validation suite only", "ties go to the first candidate",
                   "protocol_run.json", "overrides (tests and smoke runs only)", "--executor {local,ray}"):
        assert phrase in text, phrase
    import argparse

    from molmomotion_policies.cli import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    for name, scale in load_protocol().scales.items():  # the file's command is this one, for its own scale
        words = scale.command.split()
        assert words[:3] == ["molmomotion", "experiment", "protocol"]
        args = parser.parse_args(words[1:])
        assert args.scale == name and args.handler.__name__ == "run_protocol_command"
        assert (args.executor == "ray") == (name == "full")


def test_forecast_fm_steps_reaches_cs_sampler_and_keeps_old_cell_hashes(protocol_run):
    out, _, record = protocol_run
    assert FORECAST_FM_STEPS == PIPELINE_FM_STEPS
    # A value from before the field existed: the default leaves every stored cell's hash as it was.
    assert cell_hash("x", [("push", 1)], AgentConfig()) == "f599ad3e0d94568a"
    assert cell_hash("x", [("push", 1)], AgentConfig(forecast_fm_steps=10)) != "f599ad3e0d94568a"
    assert ExperimentConfig(eval_split="validation", forecast_fm_steps=10).eval_tag().endswith("-x4-fm10")
    folder = out / record["suites"]["test"]["frozen"]["folder"]
    agent = PolicyAgent(folder / "runs" / "C-s0" / "step-000005.pt", AgentConfig(forecast_fm_steps=10))
    assert agent._pipeline.forecaster.backend.steps == 10
    assert PolicyAgent(folder / "runs" / "C-s0" / "step-000005.pt")._pipeline.forecaster.backend.steps == 6


def test_the_full_scale_plans_every_setting_with_the_protocols_numbers(pretrained, tmp_path):
    """Nothing is run: the full scale's groups of runs, their folders and suites, as the cluster run would make them."""
    _, encoders = pretrained
    run = ProtocolRun(load_protocol(), "full", encoders, tmp_path / "full", progress=False)
    assert [(s.name, s.protocol_variants, s.variants) for s in run.setting_list] == [
        ("frozen", ("A", "B", "C", "D"), ("A", "B", "C", "D")), ("frozen-geo", ("A_geo", "B_geo"), ("A", "B")),
        ("finetune_last_blocks", ("A", "B", "C", "D"), ("A", "B", "C", "D")),
        ("finetune_last_blocks-geo", ("A_geo", "B_geo"), ("A", "B"))]
    assert [run._setting_fields(s) for s in run.setting_list] == [
        {"finetune": "none"}, {"finetune": "none", "footprint": True},
        {"finetune": "post_trunk", "encoder_lr": 1e-4},
        {"finetune": "post_trunk", "encoder_lr": 1e-4, "footprint": True}]
    assert [c.applies_to for c in run.choices] == [("A", "B", "C")] * 3 + [("C",), ()]  # D is never judged
    base = run.base_config()
    assert (base.seeds, base.steps, base.episodes_per_family, base.train_episodes_per_family, base.batch_size,
            base.max_samples, base.state_noise_m, base.lr_schedule) == (
        5, (500, 1000, 2000, 5000, 10000, 20000), 50, 400, 64, 150, 0.015, "constant")
    assert run.suite_fields("test")["episodes_per_family"] == run.suite_fields("ood")["episodes_per_family"] == 100
    with pytest.raises(ProtocolRunError, match="unknown scale"):
        ProtocolRun(load_protocol(), "huge", encoders, tmp_path / "x", progress=False)
    with pytest.raises(ProtocolRunError, match="lacks fm_v2.pt, base_matched.pt"):
        ProtocolRun(load_protocol(), "local", tmp_path, tmp_path / "x", progress=False)
