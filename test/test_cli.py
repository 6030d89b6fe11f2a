"""The ``molmomotion`` command line, run as a real subprocess."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from molmomotion_ros.cli import build_parser
from molmomotion_sim.suites import held_out_combinations


def run_cli(*args: str, cwd: Path | None = None, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "molmomotion_ros.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout_s)


def error_lines(stderr: str) -> list[str]:
    """stderr without PyBullet's import banner (printed by its C code, not by the CLI)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("pybullet build time")]


def test_help_lists_the_commands_without_loading_pybullet():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "sim-eval" in result.stdout and "generate-data" in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from molmomotion_ros import cli; cli.build_parser().format_help(); "
         "print(sorted(m for m in ('pybullet', 'torch', 'molmomotion_sim') if m in sys.modules))"],
        capture_output=True, text=True, timeout=60,
    )
    assert probe.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["sim-eval", "generate-data", "launch", "cell-eval", "record", "play", "recover"])
def test_every_flag_has_help(command):
    assert run_cli(command, "--help").returncode == 0
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in [*parser._actions, *commands.choices[command]._actions]:
        assert action.help, f"{command} {action.option_strings} has no help text"


BAD_SUITES = {
    "malformed.yaml": "split: test\nfamilies: [\n",
    "unknown-key.yaml": "split: test\nepisodes_per_family: 1\nfamilies: {push: {}}\nrounds: 2\n",
    "out-of-split.yaml": "split: test\nfamilies: {push: {seeds: [5]}}\n",
    "two-splits.yaml": "split: test\nfamilies: {push: {seeds: [110000]}, stack: {seeds: [120000]}}\n",
    "unknown-colour.yaml": "split: test\nepisodes_per_family: 1\nfamilies: {push: {}}\noptions: {colours: [mauve]}\n",
    "terse.yaml": 'phrasings: {stack: ["stack the {object}"], push: ["shove the {colour} {object} {direction}"]}\n',
}

BAD_INPUTS = [
    [],
    ["juggle"],
    ["sim-eval", "--families", "juggle"],
    ["sim-eval", "--families", ","],
    ["sim-eval", "--agent", "telepath"],
    ["sim-eval", "--episodes", "0"],
    ["sim-eval", "--episodes", "-3"],
    ["sim-eval", "--episodes", "many"],
    ["sim-eval", "--workers", "0"],
    ["sim-eval", "--contact-sheet", "-1"],
    ["sim-eval", "--suite", "absent.yaml"],
    ["sim-eval", "--suite", "absent"],
    ["sim-eval", "--suite", "malformed.yaml"],
    ["sim-eval", "--suite", "unknown-key.yaml"],
    ["sim-eval", "--suite", "out-of-split.yaml"],
    ["sim-eval", "--suite", "two-splits.yaml"],
    ["sim-eval", "--suite", "unknown-colour.yaml"],
    ["sim-eval", "--suite", "smoke", "--episodes", "20000"],
    ["sim-eval", "--suite", "smoke", "--out", "a-file/eval.json"],
    ["sim-eval", "--suite", "smoke", "--out", "."],
    ["sim-eval", "--suite", "smoke", "--phrasings", "absent"],
    ["sim-eval", "--suite", "smoke", "--phrasings", "terse.yaml"],
    ["generate-data"],
    ["generate-data", "--out", "data", "--split", "exam"],
    ["generate-data", "--out", "data", "--episodes", "0"],
    ["generate-data", "--out", "data", "--episodes", "200000"],
    ["generate-data", "--out", "data", "--families", "juggle"],
    ["generate-data", "--out", "data", "--history", "4"],
    ["generate-data", "--out", "data", "--history", "0"],
    ["generate-data", "--out", "data", "--horizon", "0"],
    ["generate-data", "--out", "data", "--workers", "-2"],
    ["generate-data", "--out", "a-file/data"],
    ["generate-data", "--out", "data", "--options-suite", "absent"],
    ["generate-data", "--out", "data", "--options-suite", "unknown-colour.yaml"],
    ["generate-data", "--out", "data", "--options-suite", "heldout_language"],  # held-out words in training data
    ["generate-data", "--out", "data", "--split", "validation", "--options-suite", "heldout_language"],
    ["generate-data", "--out", "data", "--options-suite", "heldout2_language"],
    ["generate-data", "--out", "data", "--split", "validation", "--options-suite", "heldout2_language"],
    ["record"],
    ["record", "."],  # the test's folder holds files: a bag never goes into a non-empty folder
    ["record", "a-file"],
    ["record", "a-file/bag"],
    ["record", "data", "9lives"],
    ["record", "data", "--compression", "lz4"],
    ["record", "data", "--max-bag-size", "0.0001"],
    ["record", "data", "--max-bag-duration", "0"],
    ["play"],
    ["play", "absent"],
    ["play", "a-file"],  # not MCAP
    ["play", "."],  # a folder without a bag
    ["play", "a-file", "--rate", "0"],
    ["play", "a-file", "--clock", "0"],
    ["play", "a-file", "--delay", "-1"],
    ["play", "a-file", "--start-offset", "soon"],
    ["play", "a-file", "--remap", "/a:=9b"],
    ["recover"],
    ["recover", "absent"],
    ["recover", "a-file"],
]


@pytest.mark.parametrize("args", BAD_INPUTS, ids=lambda args: " ".join(args) or "<none>")
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, args):
    for name, text in BAD_SUITES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "a-file").write_text("not a folder")
    result = run_cli(*args, cwd=tmp_path)
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("molmomotion: error:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_sim_eval_writes_results_and_prints_a_table(tmp_path):
    out = tmp_path / "results" / "eval.json"
    result = run_cli("sim-eval", "--suite", "smoke", "--families", "push", "--episodes", "1", "--workers", "1",
                     "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:2] == ["family", "n"]
    assert "argv[0]" not in result.stdout  # PyBullet's connect banner stays out of the table
    document = json.loads(out.read_text())
    assert document["meta"]["suite"] == "smoke" and document["meta"]["agent"] == "oracle"
    assert [(e["family"], e["seed"]) for e in document["episodes"]] == [("push", 110000)]


def test_sim_eval_phrasings_rewords_the_same_episodes_and_records_the_source(tmp_path):
    out = tmp_path / "eval.json"
    result = run_cli("sim-eval", "--suite", "smoke", "--families", "push", "--episodes", "1", "--workers", "1",
                     "--phrasings", "heldout", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["meta"]["suite"] == "smoke-phrasings-heldout"
    assert document["meta"]["phrasings"]["push"]["name"] == "heldout"
    assert document["meta"]["phrasings"]["push"]["held_out"] is True
    [episode] = document["episodes"]
    assert (episode["family"], episode["seed"]) == ("push", 110000)
    assert not episode["instruction"].startswith(("push ", "slide "))  # not a vocabulary template


def test_results_prints_runs_side_by_side_and_refuses_a_non_results_file(tmp_path):
    ROOT = Path(__file__).resolve().parents[1]
    graph, harness = ROOT / "docs/results/graph-policy-A-10pf.json", ROOT / "docs/results/eval-policy-A-10pf.json"
    result = run_cli("results", str(graph), str(harness), "--labels", "graph,harness")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["family", "graph", "harness"]
    overall = [line for line in lines if line.startswith("all")][0]
    expected = [f"{sum(e['success'] for e in json.loads(f.read_text())['episodes'])}/40" for f in (graph, harness)]
    assert overall.split()[1::4] == expected
    (tmp_path / "bad.json").write_text("{}")
    bad = run_cli("results", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and error_lines(bad.stderr)[0].startswith("molmomotion: error:")


def test_default_output_path_names_suite_and_agent(tmp_path):
    result = run_cli("sim-eval", "--suite", "smoke", "--families", "stack", "--episodes", "1", "--workers", "1",
                     "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "results" / "eval-smoke-oracle.json").is_file()


def test_generate_data_writes_a_dataset_without_ood_targets(tmp_path):
    out = tmp_path / "data"
    common = ["generate-data", "--split", "train", "--episodes", "1", "--families", "push", "--workers", "1",
              "--horizon", "8", "--out", str(out), "--no-progress"]
    result = run_cli(*common, "--history", "2")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"] == "train" and manifest["families"] == ["push"]
    excluded = {tuple(c) for c in manifest["config"]["task_options"]["exclude_combinations"]}
    assert excluded == set(held_out_combinations("ood"))

    again = run_cli(*common, "--history", "1")  # another configuration in the same folder
    lines = error_lines(again.stderr)
    assert again.returncode == 2 and len(lines) == 1 and lines[0].startswith("molmomotion: error:")
