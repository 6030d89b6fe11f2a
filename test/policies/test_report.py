"""``molmomotion experiment report DIR``: the README's policy table is what the command prints from the shipped
evaluation files, those files reproduce the numbers reported before issue 21, and the report's checks on
synthetic run folders."""

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest

from molmomotion_policies.protocol import load_protocol
from molmomotion_policies.report import ReportError, build_report, step_label, write_report

ROOT = Path(__file__).resolve().parents[2]
RUN = "policies/results/3seeds-v2-recipe"  # the run behind the README's policy row
BEGIN, END = "<!-- experiment-report:begin -->", "<!-- experiment-report:end -->"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The command as the README gives it, from the repository root; its stdout and its files."""
    from molmomotion_ros.cli import main

    out = tmp_path_factory.mktemp("report")
    stdout, stderr = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            rc = main(["experiment", "report", RUN, "--out", str(out)])
    finally:
        os.chdir(cwd)
    assert rc == 0, stderr.getvalue()
    return stdout.getvalue(), out


def test_readme_policy_table_is_what_the_command_prints(shipped):
    stdout, _ = shipped
    readme = (ROOT / "README.md").read_text()
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")
    assert block == stdout.rstrip("\n"), (
        f"the README's policy table is not what `molmomotion experiment report {RUN}` prints: run it (add "
        "--out /tmp/report to keep the folder clean) and paste its stdout between the markers")


def test_committed_report_is_the_commands_output(shipped):
    _, out = shipped
    assert (ROOT / RUN / "report.md").read_text() == (out / "report.md").read_text()
    assert json.loads((ROOT / RUN / "report.json").read_text()) == json.loads((out / "report.json").read_text())
    for png in ("report_success_vs_steps.png", "report_paired_differences.png", "report_per_seed.png"):
        assert (out / png).stat().st_size > 10_000 and (out / png).read_bytes()[:4] == b"\x89PNG"


def test_the_files_reproduce_the_numbers_reported_before_issue_21(shipped):
    """docs/results.md's table and the README's policy row (point estimates, Wilson intervals, the old paired
    intervals over 300 slots) all follow from the 66 evaluation files; only the intervals change meaning."""
    _, out = shipped
    data = json.loads((out / "report.json").read_text())
    (group,) = data["groups"]
    assert (group["suite"], group["split"]) == ("main", "test")
    cells = {(c["variant"], c["step"]): c for c in group["cells"]}
    docs_table = {  # docs/results.md, "Policies and the success-rate experiment"
        "A": {500: 36.0, 1000: 55.3, 2000: 77.7, 5000: 82.0, 10000: 84.0, 20000: 86.3},
        "B": {500: 15.3, 1000: 36.0, 2000: 65.0, 5000: 74.3, 10000: 85.7, 20000: 86.3},
        "C": {1000: 52.7, 2000: 72.3, 5000: 74.0, 10000: 84.7, 20000: 88.7},
        "D": {1000: 0.0, 2000: 0.7, 5000: 0.7, 10000: 1.7, 20000: 2.7},
    }
    for variant, row in docs_table.items():
        for step, rate in row.items():
            c = cells[(variant, step)]
            assert (c["n"], c["scenes"], c["seeds"]) == (300, 100, [0, 1, 2])
            assert round(c["successes"] / c["n"] * 100, 1) == rate, (variant, step)
    assert set(cells) == {(v, s) for v, row in docs_table.items() for s in row}
    # per seed at 500 steps (docs: A 51, 16, 41; B 29, 12, 5)
    assert [round(r * 100) for r in cells[("A", 500)]["per_seed"]] == [51, 16, 41]
    assert [round(r * 100) for r in cells[("B", 500)]["per_seed"]] == [29, 12, 5]
    pairs = {(p["first"], p["second"], p["step"]): p["estimate"] for p in group["pairs"]}
    assert round(pairs[("A", "B", 1000)]["value"] * 100, 1) == 19.3
    assert round(pairs[("A", "B", 20000)]["value"] * 100, 1) == 0.0
    report_md = (out / "report.md").read_text()
    for old in ("| A | 20000 | 300 | 259 | 86.3% | [82.0%, 89.8%]",  # Wilson, as in the README row
                "| A vs B | 500 | 300 | 77 | 15 | +20.7 | [+14.9, +26.5]",  # docs: +20.7 [14.9, 26.5]
                "| A vs B | 1000 | 300 | 79 | 21 | +19.3 | [+13.2, +25.5]",
                "| A vs B | 10000 | 300 | 18 | 23 | -1.7 | [-5.8, +2.5]",
                "| C vs A | 5000 | 300 | 12 | 36 | -8.0 | [-12.4, -3.6]"):
        assert old in report_md, old
    # The README's row quotes the hierarchical intervals (not the Wilson ones above): the report's, rounded.
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| policies, 20k"))
    a_final, a_b_1k = cells[("A", 20000)]["estimate"], pairs[("A", "B", 1000)]
    for text in (f"**86.3%** [{a_final['lo'] * 100:.1f}, {a_final['hi'] * 100:.1f}]", "B (from base.pt) **86.3%**",
                 "**88.7%**", "2.7%", f"**+19.3** [{a_b_1k['lo'] * 100:+.1f}, {a_b_1k['hi'] * 100:+.1f}] points at 1k",
                 "0.0 at 20k", "76.3 vs 56.0"):
        assert text in row, text


def test_the_hierarchical_intervals_are_wider_than_the_slot_independent_ones(shipped):
    _, out = shipped
    (group,) = json.loads((out / "report.json").read_text())["groups"]
    pairs = {(p["first"], p["second"], p["step"]): p["estimate"] for p in group["pairs"]}
    e = pairs[("A", "B", 1000)]
    assert e["hi"] - e["lo"] > 1.5 * (0.255 - 0.132)  # the old interval [13.2, 25.5]
    assert e["n"] == 300 and e["seeds"] == [3, 3] and e["scenes"] == 100


def test_the_report_flags_what_the_files_say_about_themselves(shipped):
    stdout, _ = shipped
    assert "outside its untouched range 112000–112999" in stdout
    assert "(`reused_from`): A-s0-010000, A-s1-010000, A-s2-010000, B-s0-010000, B-s1-010000, B-s2-010000" in stdout
    assert "success_rate.json has no row for A 500, B 500" in stdout
    assert "| A | 3 × 100 | 36.0 [" in stdout


# --- synthetic run folders ------------------------------------------------------------------------------------
FAMILIES = ("push", "stack")


def write_eval(root: Path, variant: str, seed: int, step: int, successes, scene_seeds=range(110_000, 110_004),
               meta=None, summary_successes=None):
    episodes = [{"seed": s, "family": f, "instruction": "x", "success": bool(ok), "failure_reason": "", "steps": 1,
                 "sim_time_s": 1.0, "wall_time_s": 1.0, "agent": f"policy-{variant}", "model_id": "m"}
                for (f, s), ok in zip([(f, s) for f in FAMILIES for s in scene_seeds], successes, strict=True)]
    n, k = len(episodes), sum(e["success"] for e in episodes)
    document = {"meta": {"checkpoint": f"results/x/runs/{variant}-s{seed}/step-{step:06d}.pt", "suite": "main",
                         "git_revision": "abc", **(meta or {})},
                "summary": [{"family": "all", "n": n,
                             "successes": k if summary_successes is None else summary_successes}],
                "episodes": episodes}
    path = root / "evals" / f"{variant}-s{seed}-{step:06d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


@pytest.fixture()
def protocol():
    return load_protocol()


def test_synthetic_run(tmp_path, protocol):
    for seed in range(2):
        write_eval(tmp_path, "A", seed, 500, [1, 1, 1, 1, 1, 1, 0, 0])
        write_eval(tmp_path, "B", seed, 500, [1, 1, 0, 0, 1, 0, 0, 0])
        write_eval(tmp_path, "A", seed, 1000, [1] * 8)
    report = build_report(tmp_path, protocol, replicates=500, display_dir="RUN")
    text = report.headline
    assert "| A | 2 × 8 | 75.0 [" in text and "| 100.0 [100.0, 100.0] |" in text
    assert "| B | 2 × 8 | 37.5 [" in text and text.count("–") >= 1  # B has no 1k cell
    assert "| A − B, paired per scene | 2 × 8 | +37.5 [" in text
    assert "| A − B (same seed number) | +38 / +38 | – |" in text
    assert "A ≥ 2× B at 10k steps: not measured" in text
    assert "test seeds (110000–110003) lie outside" in text
    assert "Every episode had the same outcome in A 1k" in text
    files = write_report(report, tmp_path / "out")
    assert set(files) == {"markdown", "json", "success", "pairs", "seeds"}
    assert all(p.stat().st_size > 0 for p in files.values())
    assert set(write_report(report, tmp_path / "bare", plots=False)) == {"markdown", "json"}


def test_flags_hand_edits_and_disagreeing_summaries(tmp_path, protocol):
    write_eval(tmp_path, "A", 0, 500, [1] * 8, meta={"reused_from": "elsewhere"})
    write_eval(tmp_path, "A", 1, 500, [1] * 4 + [0] * 4, summary_successes=7)
    write_eval(tmp_path, "B", 0, 500, [0] * 8, meta={"checkpoint": "results/x/runs/A-s0/step-020000.pt"})
    write_eval(tmp_path, "B", 1, 500, [0] * 8)
    text = build_report(tmp_path, protocol, replicates=200).headline
    assert "1 evaluation files carry metadata the experiment runner does not write (`reused_from`): A-s0-000500" in text
    assert "summaries disagree with their episodes: A-s1-000500" in text
    assert "name a checkpoint of another variant, seed or step in their metadata: B-s0-000500" in text


def test_groups_suites_and_splits_apart(tmp_path, protocol):
    for seed in range(2):
        write_eval(tmp_path / "test", "A", seed, 500, [1, 0] * 4)
        write_eval(tmp_path / "validation", "A", seed, 500, [1, 1] * 4, scene_seeds=range(105_000, 105_004))
    report = build_report(tmp_path, protocol, replicates=200)
    assert [(g.suite, g.split) for g in report.groups] == [("main", "test"), ("main", "validation")]
    assert "**main suite, test split**" in report.headline and "**main suite, validation split**" in report.headline


@pytest.mark.parametrize("setup, match", [
    (lambda root: None, "no evaluation files"),
    (lambda root: (write_eval(root, "A", 0, 500, [1] * 8), write_eval(root / "again", "A", 0, 500, [1] * 8)), "twice"),
    (lambda root: (write_eval(root, "A", 0, 500, [1] * 8),
                   write_eval(root, "A", 1, 500, [1] * 8, scene_seeds=range(110_010, 110_014))), "other scenes"),
    (lambda root: write_eval(root, "A", 0, 500, [1] * 8, scene_seeds=[110_000, 110_001, 100_002, 100_003]),
     "mixes seed splits"),
    (lambda root: (root / "evals").mkdir(parents=True) or (root / "evals" / "A-s0-000500.json").write_text("{}"),
     "no episode list"),
])
def test_refuses_unusable_folders(tmp_path, protocol, setup, match):
    setup(tmp_path)
    with pytest.raises(ReportError, match=match):
        build_report(tmp_path, protocol, replicates=200)


def test_cli_error_is_one_line(tmp_path, capsys):
    from molmomotion_policies.cli import main

    assert main(["experiment", "report", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"molmomotion experiment report: error: no folder", err)


def test_step_labels():
    assert [step_label(s) for s in (500, 1000, 1500, 20000, 250)] == ["500", "1k", "1.5k", "20k", "250"]
