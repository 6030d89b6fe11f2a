"""Motion-type classification of forecasts on synthetic tracks, the confusion table, and eval-forecast's use of
both with re-phrased instructions on a tiny generated dataset."""

import json

import numpy as np
import pytest
import yaml

from molmomotion_ros.forecasting.motion_type import (
    FAMILY_MOTION,
    LIFT_M,
    MOVE_M,
    confusion,
    format_confusion,
    motion_type,
)

START = np.array([[0.5, 0.0, 0.62], [0.52, 0.01, 0.63], [0.49, -0.01, 0.62], [0.51, 0.0, 0.64]])  # (P, 3)


def track(offsets) -> np.ndarray:
    """(P, F, 3): every point follows the same per-step offsets (F, 3) from START."""
    return START[:, None, :] + np.asarray(offsets, float)[None]


def ramp(end, steps: int = 16) -> np.ndarray:
    return np.linspace(0, 1, steps)[:, None] * np.asarray(end, float)


def test_pick_and_place_is_a_lift_even_when_it_ends_back_on_the_table():
    up_over_down = np.concatenate([ramp([0.0, 0.0, 0.08]), ramp([0.15, 0.0, 0.0]) + [0, 0, 0.08],
                                   [0.15, 0.0, 0.08] - ramp([0.0, 0.0, 0.08])])
    assert motion_type(track(up_over_down), START) == "lift"


def test_sliding_along_the_table_is_a_push():
    assert motion_type(track(ramp([0.0, 0.12, 0.005])), START) == "push"


def test_thresholds_decide_at_their_values():
    assert motion_type(track(ramp([0.0, 0.0, LIFT_M * 0.9])), START) == "still"
    assert motion_type(track(ramp([0.0, 0.0, LIFT_M * 1.1])), START) == "lift"
    assert motion_type(track(ramp([MOVE_M * 0.9, 0.0, 0.0])), START) == "still"
    assert motion_type(track(ramp([MOVE_M * 1.1, 0.0, 0.0])), START) == "push"


def test_a_minority_of_stray_points_does_not_change_the_verdict():
    pushed = track(ramp([0.1, 0.0, 0.0]))
    pushed[0, :, 2] += np.linspace(0, 0.2, pushed.shape[1])  # one point of four flies up (slipped off the object)
    assert motion_type(pushed, START) == "push"
    lifted = track(ramp([0.0, 0.0, 0.1]))
    lifted[1] = START[1]  # one point stays behind
    assert motion_type(lifted, START) == "lift"


def test_start_defaults_to_the_first_step_and_nan_steps_are_ignored():
    pushed = track(ramp([0.0, -0.1, 0.0]))
    assert motion_type(pushed) == "push"
    pushed[:, -5:] = np.nan  # padded past the episode's end
    pushed[2, :3] = np.nan
    assert motion_type(pushed, START) == "push"
    assert motion_type(np.full((4, 8, 3), np.nan), START) == "still"


def test_confusion_counts_per_family_against_its_expected_motion():
    rows = [("push", "push"), ("push", "lift"), ("push", "lift"), ("push", "still"), ("push", "refused"),
            ("stack", "lift")]
    table = confusion(rows)
    assert list(table) == ["push", "stack"]
    # A refused instruction is a miss (no forecast), never left out of the denominator.
    assert table["push"] == {"expected": "push", "lift": 2, "push": 1, "still": 1, "refused": 1, "as_expected": 0.2}
    assert table["stack"]["as_expected"] == 1.0 and table["stack"]["expected"] == FAMILY_MOTION["stack"]
    text = format_confusion({"fm": table})
    push_row = next(line for line in text.splitlines() if line.startswith("fm") and " push " in line)
    assert push_row.split()[2:] == ["push", "2", "1", "1", "1", "20.0%"]


@pytest.fixture(scope="module")
def tiny_test_data(tmp_path_factory):
    from molmomotion_sim.dataset import generate_dataset

    out = tmp_path_factory.mktemp("test-data")
    generate_dataset("test", 1, out, families=["push", "stack"], workers=1, progress=False)
    return out


def test_eval_forecast_rephrases_and_reports_motion_types(tiny_test_data, tmp_path):
    from molmomotion_ros.forecasting.evaluation import evaluate_forecasters
    from molmomotion_ros.phrasings import load_phrasing_set

    report = evaluate_forecasters(tiny_test_data, ["stationary"], tmp_path, num_samples=2, progress=False,
                                  phrasings="heldout")
    assert report["phrasings"]["name"] == "heldout" and report["phrasings"]["held_out"] is True
    truth, stationary = report["motion_types"]["ground-truth"], report["motion_types"]["stationary"]
    assert truth["push"]["push"] == 1 and truth["stack"]["lift"] == 1  # the classifier agrees with the oracle
    assert stationary["push"]["still"] == 1 and stationary["stack"]["still"] == 1
    written = json.loads((tmp_path / "forecast-eval.json").read_text())
    assert written["motion_types"] == report["motion_types"] and written["phrasings"] == report["phrasings"]
    heldout = load_phrasing_set("heldout")
    from molmomotion_ros.motion_data import MotionDataset

    for meta in MotionDataset(tiny_test_data).meta:  # the sentence sim-eval would give the same episode
        assert heldout.phrase(meta["family"], meta["seed"], meta["phrase_fields"]) != meta["instruction"]


def test_eval_forecast_with_the_parser_forecasts_the_template_phrasing_and_counts_refusals(tiny_test_data,
                                                                                           tmp_path):
    from molmomotion_ros.forecasting.evaluation import evaluate_forecasters
    from molmomotion_ros.language import instruction_for_model

    report = evaluate_forecasters(tiny_test_data, ["stationary"], tmp_path, num_samples=2, progress=False,
                                  phrasings="heldout", read_instruction=instruction_for_model)
    assert report["instruction_parser"] is True and report["refusals"] == []  # held-out wording is understood
    assert report["summary"]["stationary"]["k1"]  # metrics were computed, not skipped

    refusing = tmp_path / "refusing.yaml"  # every instruction names an action the tasks cannot do
    refusing.write_text(yaml.safe_dump({"phrasings": {family: ["throw the {colour} {object} at the wall"]
                                                      for family in ("push", "stack")}}))
    report = evaluate_forecasters(tiny_test_data, ["stationary"], tmp_path / "r", num_samples=2, progress=False,
                                  phrasings=str(refusing), read_instruction=instruction_for_model)
    assert len(report["refusals"]) == 2 and all(r["reason"] for r in report["refusals"])
    stationary = report["motion_types"]["stationary"]
    assert stationary["push"]["refused"] == 1 and stationary["push"]["as_expected"] == 0.0
    assert report["motion_types"]["ground-truth"]["push"]["push"] == 1  # the truth row still counts every episode


def test_eval_forecast_refuses_heldout_phrasings_on_validation_data(tmp_path):
    from molmomotion_ros.forecasting.evaluation import evaluate_forecasters
    from molmomotion_ros.phrasings import PhrasingError
    from molmomotion_sim.dataset import generate_dataset

    generate_dataset("validation", 1, tmp_path / "val", families=["push"], workers=1, progress=False)
    with pytest.raises(PhrasingError, match="held out"):
        evaluate_forecasters(tmp_path / "val", ["stationary"], tmp_path / "out", progress=False, phrasings="heldout")


def test_the_report_names_the_phrasing_source():
    from types import SimpleNamespace

    from molmomotion_ros.forecasting.evaluation import _phrasing_source
    from molmomotion_ros.phrasings import load_phrasing_set

    own = SimpleNamespace(config={"task_options": {}})
    assert _phrasing_source(own, None)["name"] == "vocabulary"
    assert _phrasing_source(own, load_phrasing_set("heldout"))["applied"] == "re-phrased at evaluation"
    recorded = _phrasing_source(SimpleNamespace(config={"task_options": {"phrasing_set": "heldout"}}), None)
    assert (recorded["name"], recorded["held_out"], recorded["applied"]) == ("heldout", True, "recorded in the dataset")
    elsewhere = _phrasing_source(SimpleNamespace(config={"task_options": {"phrasing_set": "gone/mine.yaml"}}), None)
    assert elsewhere["name"] == "gone/mine.yaml" and elsewhere["source"] is None


def test_rephrasing_needs_recorded_phrase_fields():
    from molmomotion_ros.forecasting.evaluation import EvaluationError, episode_instruction
    from molmomotion_ros.phrasings import load_phrasing_set

    meta = {"family": "push", "seed": 110000, "instruction": "push the red block forward"}
    assert episode_instruction(meta, None) == meta["instruction"]
    with pytest.raises(EvaluationError, match="regenerate"):
        episode_instruction(meta, load_phrasing_set("heldout"))
    fields = {"colour": "red", "object": "block", "direction": "forward"}
    rephrased = episode_instruction({**meta, "phrase_fields": fields}, load_phrasing_set("heldout"))
    assert rephrased == load_phrasing_set("heldout").phrase("push", 110000, fields) != meta["instruction"]
