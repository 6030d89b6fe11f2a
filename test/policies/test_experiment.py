"""The success-rate runner on a tiny real config: trains, evaluates, writes JSON/table/PNGs, resumes."""

import json

import pytest

from molmomotion_policies.cli import add_parser
from molmomotion_policies.experiment import ExperimentConfig, run_experiment
from molmomotion_policies.observation import PolicyError

TINY = dict(variants=("A", "B"), steps=(5, 10), episodes_per_family=1, families=("push",), train_episodes_per_family=1,
            val_episodes_per_family=1, batch_size=8, eval_every=5, max_samples=8)


def test_runs_writes_and_resumes(tmp_path):
    cfg = ExperimentConfig(**TINY, demo_cache=str(tmp_path / "demos"))
    result = run_experiment(cfg, tmp_path / "exp", progress=False)
    summary = json.loads(result.files["json"].read_text())
    assert [(r["variant"], r["step"], r["n"]) for r in summary["rows"]] == [("A", 5, 1), ("A", 10, 1), ("B", 5, 1),
                                                                             ("B", 10, 1)]
    assert set(summary["val_curves"]) == {"A", "B"} and summary["val_curves"]["A"]["step"] == [5, 10]
    assert summary["steps_to_reach_B_final_val_error"]["B_final_val_pos_err_cm"] > 0
    for key in ("success_png", "val_png"):
        assert result.files[key].read_bytes()[:4] == b"\x89PNG"
    assert "| A | 10 |" in result.table
    assert [(c["pair"], c["step"], c["n"]) for c in summary["paired"]] == [("A vs B", 5, 1), ("A vs B", 10, 1)]
    assert "| A vs B | 10 | 1 |" in result.table
    evals = sorted((tmp_path / "exp" / "evals").glob("*.json"))
    assert len(evals) == 4
    stamps = [p.stat().st_mtime_ns for p in evals]
    with pytest.raises(PolicyError, match="--resume"):
        run_experiment(cfg, tmp_path / "exp", progress=False)  # a folder holding an experiment needs resume
    again = run_experiment(cfg, tmp_path / "exp", progress=False, resume=True)  # everything on disk: nothing re-run
    assert again.execution["cells"] == {"total": 4, "skipped": 4, "run": 0}
    assert [p.stat().st_mtime_ns for p in evals] == stamps
    assert again.summary["rows"] == summary["rows"]
    # A cell whose results carry another config hash is stale: only that cell runs again, to the same episodes.
    document = json.loads(evals[0].read_text())
    document["meta"]["config_hash"] = "0" * 16
    evals[0].write_text(json.dumps(document))
    fixed = run_experiment(cfg, tmp_path / "exp", progress=False, resume=True)
    assert fixed.execution["cells"] == {"total": 4, "skipped": 3, "run": 1}
    assert fixed.execution["training_runs"] == {"total": 2, "skipped": 2, "run": 0}
    assert json.loads(evals[0].read_text())["episodes"][0]["success"] == document["episodes"][0]["success"]
    assert fixed.summary["rows"] == summary["rows"]
    stamps = [p.stat().st_mtime_ns for p in evals]
    # A step the finished runs passed is added by replaying them; nothing already there is redone.
    earlier = run_experiment(ExperimentConfig(**{**TINY, "steps": (3, 5, 10)}, demo_cache=str(tmp_path / "demos")),
                             tmp_path / "exp", progress=False, resume=True)
    assert earlier.execution["cells"] == {"total": 6, "skipped": 4, "run": 2}
    assert [(r["variant"], r["step"]) for r in earlier.summary["rows"]] == [
        ("A", 3), ("A", 5), ("A", 10), ("B", 3), ("B", 5), ("B", 10)]
    assert [p.stat().st_mtime_ns for p in evals] == stamps
    assert earlier.summary["rows"][1:3] == summary["rows"][:2]
    # Checkpoints hashed otherwise (another encoder under the same folder, say) are refused, not mixed in.
    train_json = tmp_path / "exp" / "runs" / "A-s0" / "train.json"
    stored = json.loads(train_json.read_text())
    train_json.write_text(json.dumps({**stored, "config_hash": {k: "0" * 16 for k in stored["config_hash"]}}))
    with pytest.raises(PolicyError, match="another encoder"):
        run_experiment(cfg, tmp_path / "exp", progress=False, resume=True)
    train_json.write_text(json.dumps(stored))
    with pytest.raises(PolicyError, match="another config"):
        run_experiment(ExperimentConfig(**{**TINY, "max_samples": 9}, demo_cache=str(tmp_path / "demos")),
                       tmp_path / "exp", progress=False, resume=True)


def test_other_evaluation_suites_reuse_the_checkpoints_and_write_beside_them(tmp_path):
    """The protocol's validation, untouched-test and OOD suites on one folder's checkpoints: no training again, each
    suite's cells and summary in a folder of their own, the default evaluation's files untouched."""
    base = dict(TINY, variants=("A",), steps=(5,), demo_cache=str(tmp_path / "demos"))
    first = run_experiment(ExperimentConfig(**base), tmp_path / "exp", progress=False)
    default_cell = tmp_path / "exp" / "evals" / "A-s0-000005.json"
    stamp = default_cell.stat().st_mtime_ns
    suites = {"main-validation-105000-n2-x4": dict(eval_split="validation", eval_seed_start=105000),
              "main-test-112000-n2-x2": dict(eval_seed_start=112000, execute_steps=2),
              "ood-ood-122000-n2-x4": dict(eval_split="ood", eval_seed_start=122000, eval_suite="ood")}
    for tag, options in suites.items():
        cfg = ExperimentConfig(**{**base, "episodes_per_family": 2}, **options)
        assert cfg.eval_tag() == tag
        result = run_experiment(cfg, tmp_path / "exp", progress=False, resume=True)
        assert result.execution["training_runs"] == {"total": 1, "skipped": 1, "run": 0}
        assert result.execution["cells"] == {"total": 1, "skipped": 0, "run": 1}
        document = json.loads((tmp_path / "exp" / "evals" / tag / "A-s0-000005.json").read_text())
        start = options["eval_seed_start"]
        assert [e["seed"] for e in document["episodes"]] == [start, start + 1]
        assert document["meta"]["suite"] == options.get("eval_suite", "main")
        assert document["meta"]["agent_config"]["execute_steps"] == options.get("execute_steps", 4)
        assert result.files["json"].parent == tmp_path / "exp" / "evals" / tag
        again = run_experiment(cfg, tmp_path / "exp", progress=False, resume=True)
        assert again.execution["cells"] == {"total": 1, "skipped": 1, "run": 0}
    assert default_cell.stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "exp" / "experiment_config.json").read_text())["episodes_per_family"] == 1
    assert run_experiment(ExperimentConfig(**base), tmp_path / "exp", progress=False,
                          resume=True).summary["rows"] == first.summary["rows"]
    for bad, match in ((dict(eval_split="train"), "train split"), (dict(eval_seed_start=5), "not a test seed"),
                       (dict(eval_split="validation", eval_seed_start=109999, episodes_per_family=2), "leave"),
                       (dict(eval_suite="nosuch"), "evaluation suite: no suite file 'nosuch'")):
        with pytest.raises(PolicyError, match=match):
            ExperimentConfig(**{**base, **bad})


def test_cli_parses_the_issue_command():
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["experiment", "success-rate", "--variants", "A,B,C,D", "--steps",
                              "1000,2000,5000,10000,20000", "--episodes", "100", "--seeds", "3"])
    assert args.variants == ("A", "B", "C", "D") and args.steps == (1000, 2000, 5000, 10000, 20000)
    assert args.episodes == 100 and args.seeds == 3 and callable(args.handler)


def test_unknown_variant_is_refused():
    with pytest.raises(PolicyError, match="unknown variants"):
        ExperimentConfig(variants=("Z",))


def test_cli_fine_tuning_flags_and_old_folders(tmp_path):
    import argparse

    from molmomotion_policies.experiment import _identity, _jsonable_config

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["experiment", "success-rate", "--finetune", "post_trunk", "--encoder-lr", "3e-4"])
    assert args.finetune == "post_trunk" and args.encoder_lr == 3e-4
    with pytest.raises(SystemExit):
        parser.parse_args(["experiment", "success-rate", "--finetune", "all"])
    # A folder written before fine-tuning existed (no finetune/encoder_lr stored) still resumes frozen runs.
    old = _jsonable_config(ExperimentConfig())
    del old["finetune"], old["encoder_lr"]
    assert _identity(old) == _identity(_jsonable_config(ExperimentConfig()))
    assert _identity(old) != _identity(_jsonable_config(ExperimentConfig(finetune="post_trunk")))


def test_the_current_recipe_flags_and_bad_noise(tmp_path):
    import argparse

    from molmomotion_policies.experiment import _identity, _jsonable_config

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["experiment", "success-rate", "--footprint", "--state-noise-m", "0.015",
                              "--state-noise-rad", "0.1", "--lr-schedule", "cosine", "--geometry-skip"])
    assert args.footprint and args.geometry_skip and args.lr_schedule == "cosine"
    assert (args.state_noise_m, args.state_noise_rad) == (0.015, 0.1)
    assert args.handler(args.__class__(**{**vars(args), "state_noise_m": -1.0, "out": tmp_path / "x"})) == 2
    assert not (tmp_path / "x").exists()  # refused before anything was recorded or written
    for bad in ({"state_noise_m": -0.01}, {"state_noise_rad": float("nan")}, {"lr_schedule": "step"}):
        with pytest.raises(PolicyError):
            ExperimentConfig(**bad)
    # Folders written before these options existed count them as off, so they still resume.
    old = _jsonable_config(ExperimentConfig())
    for key in ("footprint", "geometry_skip", "lr_schedule", "state_noise_m", "state_noise_rad"):
        del old[key]
    assert _identity(old) == _identity(_jsonable_config(ExperimentConfig()))
    assert _identity(old) != _identity(_jsonable_config(ExperimentConfig(footprint=True)))


def test_paired_comparisons_count_discordant_slots_and_test_them():
    from molmomotion_policies.experiment import _paired_comparisons, _sign_test
    from molmomotion_sim.episode import EpisodeResult

    def results(outcomes):
        return [EpisodeResult(100 + i, "push", "push it", ok, "", 1, 1.0, 1.0, "policy", "m")
                for i, ok in enumerate(outcomes)]

    cfg = ExperimentConfig(variants=("A", "B"), steps=(10,), seeds=2)
    # Seed 0: A solves 8 of 10, B 3 (both on 2); seed 1: both solve the same 5.
    evals = {("A", 0, 10): results([1] * 8 + [0] * 2), ("B", 0, 10): results([1, 1, 0, 0, 0, 0, 0, 0, 1, 0]),
             ("A", 1, 10): results([1] * 5 + [0] * 5), ("B", 1, 10): results([1] * 5 + [0] * 5)}
    (row,) = _paired_comparisons(cfg, evals)  # C and D absent: only A vs B
    assert (row["pair"], row["n"], row["x_only"], row["y_only"]) == ("A vs B", 20, 6, 1)
    assert row["diff"] == pytest.approx(0.25) and row["diff_lo"] < 0.25 < row["diff_hi"]
    assert row["sign_test_p"] == pytest.approx(_sign_test(6, 1)) and _sign_test(6, 1) == pytest.approx(16 / 128)
    assert _sign_test(0, 0) == 1.0 and _sign_test(5, 5) == 1.0
