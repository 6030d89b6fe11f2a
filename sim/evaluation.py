"""Run a suite's episodes with an agent on parallel workers, and summarise the results.

Each worker (a local process or a Ray actor: :mod:`molmomotion_ros.execution`) builds one
:class:`World` and one agent and reuses them for every episode it is handed. Episodes are independent
— ``(family, seed, options)`` determines the scene — so the results, sorted by ``(family, seed)``, do
not depend on the executor, the number of workers or the batch size. An episode that raises is
recorded as a failure carrying the exception's message; it never stops the run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from molmomotion_ros.execution import Executor, LocalExecutor, WorkerTask

from .agents import AGENTS, Agent, make_agent
from .episode import EpisodeResult, run_episode
from .suites import EpisodeSpec, Suite
from .tasks import TASKS
from .tasks.base import Task
from .world import World

if TYPE_CHECKING:  # loaded when recording only (message packages, mcap)
    from .episode_bags import BagOptions, EpisodeBags

logger = logging.getLogger(__name__)

OVERALL = "all"


class EvaluationError(ValueError):
    """The evaluation was asked for something that does not exist (agent, family, worker count)."""


# --- running episodes --------------------------------------------------------------------------
class EpisodeRunner:
    """One World and one agent, reused across episodes; turns any exception into a failed result (except a bag
    error when recording: it stops the run)."""

    def __init__(self, agent_name: str, agent_kwargs: dict | None = None, agent: Agent | None = None,
                 record: BagOptions | None = None):
        self.agent_name = agent_name
        self.agent_kwargs = dict(agent_kwargs or {})
        self.world: World | None = None
        self.agent: Agent | None = agent  # built on first use when not given
        self.record = record  # one bag per episode (molmomotion_sim.episode_bags) when given
        self._bags: EpisodeBags | None = None

    def _new_task(self, episode: EpisodeSpec) -> Task:
        if self.world is None:
            self.world = World() if self.record is None else self._episode_bags().new_world()
        if self.agent is None:
            self.agent = make_agent(self.agent_name, **self.agent_kwargs)
        return TASKS[episode.family](self.world, episode.options)

    def run(self, episode: EpisodeSpec) -> EpisodeResult:
        if self.record is None:
            return self._run(episode)
        recording = self._episode_bags().open(episode)
        try:
            result = self._run(episode, recording.attach)
        finally:
            recording.close()  # also after a failure: what was written stays readable
        return replace(result, bag=str(recording.folder))

    def _episode_bags(self) -> EpisodeBags:
        if self._bags is None:
            from .episode_bags import EpisodeBags

            self._bags = EpisodeBags(self.record)
        return self._bags

    def _run(self, episode: EpisodeSpec, attach=None) -> EpisodeResult:
        start = time.perf_counter()
        task = None
        try:
            task = self._new_task(episode)
            agent = self.agent if attach is None else attach(self.world, self.agent)
            return run_episode(task, episode.seed, agent)
        except Exception as err:  # whatever one episode raises is that episode's failure...
            if _stops_the_run(err):  # ...but a bag that cannot be written: the run was asked for its recordings
                self._rebuild_world()
                raise
            logger.warning("%s seed %d raised %s: %s", episode.family, episode.seed, type(err).__name__, err)
            result = EpisodeResult(
                seed=episode.seed, family=episode.family, instruction=task.instruction if task else "",
                success=False, failure_reason=f"{type(err).__name__}: {_one_line(err)}", steps=0,
                sim_time_s=self.world.time_s if self.world is not None else 0.0,
                wall_time_s=time.perf_counter() - start, agent=self.agent_name,
                model_id=getattr(self.agent, "model_id", ""),
            )
            self._rebuild_world()
            return result

    def run_with_frames(self, episode: EpisodeSpec) -> tuple[EpisodeResult, np.ndarray | None, np.ndarray | None]:
        """The episode's result with its first and last RGB frames (None where there is none)."""
        first_rgb = last_rgb = None
        try:
            self._new_task(episode).reset(episode.seed)
            first_rgb = self.world.render().rgb  # (H, W, 3) uint8
        except Exception as err:  # run() below records the same failure
            logger.warning("no first frame for %s seed %d: %s", episode.family, episode.seed, err)
            self._rebuild_world()
        result = self.run(episode)  # resets again: the same seed builds the same scene
        if self.world is not None and first_rgb is not None:
            last_rgb = self.world.render().rgb
        return result, first_rgb, last_rgb

    def _rebuild_world(self) -> None:
        """Start the next episode from a fresh physics client, whatever state the failure left."""
        if self.world is not None:
            self.world.close()
        self.world = None

    def close(self) -> None:
        if self.world is not None:
            self.world.close()
            self.world = None
        if self._bags is not None:
            self._bags.close()
            self._bags = None


def _stops_the_run(err: Exception) -> bool:
    """A bag error (folder or write) ends the evaluation (its module is loaded only when recording)."""
    bags = sys.modules.get("molmomotion_ros.bags.errors")
    return bags is not None and isinstance(err, bags.BagError)


def _new_runner(agent_name: str, agent_kwargs: dict, log_level: int, record: BagOptions | None = None) -> EpisodeRunner:
    """A worker's state (:class:`~molmomotion_ros.execution.WorkerTask` ``init``)."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    return EpisodeRunner(agent_name, agent_kwargs, record=record)


def _run_one(runner: EpisodeRunner, episode: EpisodeSpec) -> EpisodeResult:
    return runner.run(episode)


def _close_runner(runner: EpisodeRunner) -> None:
    runner.close()


def evaluate(
    episodes: Suite | Sequence[EpisodeSpec],
    agent_name: str = "oracle",
    agent_kwargs: dict | None = None,
    workers: int | None = None,
    progress: bool = True,
    record: BagOptions | None = None,
    executor: Executor | None = None,
    batch_size: int | None = None,
) -> list[EpisodeResult]:
    """Run every episode with a fresh agent state per episode; results sorted by (family, seed).

    ``executor`` defaults to local worker processes, ``workers`` of them (default ``os.cpu_count()``; with one
    worker the episodes run in this process); a given executor has its own worker count. ``record`` writes one
    bag per episode (:mod:`.episode_bags`; each result's ``bag`` names it; with Ray, a folder every node
    writes to); every bag folder is made before the first episode runs, and BagFolderError names one that is
    not empty.
    """
    specs = list(episodes.episodes() if isinstance(episodes, Suite) else episodes)
    validate_request(specs, agent_name, workers)
    if record is not None:
        from .episode_bags import prepare_bag_folders

        prepare_bag_folders(record, specs)
    # Built here once, so that bad agent arguments are one clear error, not a failure in every episode.
    agent = build_agent(agent_name, agent_kwargs or {})
    if executor is None:
        executor = LocalExecutor(min(workers or os.cpu_count() or 1, len(specs)))
    label = episodes.name if isinstance(episodes, Suite) else "episodes"
    logger.info("evaluating %d episodes of %s with agent %r on the %s executor", len(specs), label, agent_name,
                executor.name)
    indexed: list[tuple[int, EpisodeResult]] = []
    successes = 0
    with _progress_bar(len(specs), label, progress) as bar:
        for index, result in _run_all(specs, agent_name, agent_kwargs or {}, executor, agent, batch_size, record):
            indexed.append((index, result))
            successes += result.success
            bar.update(1)
            bar.set_postfix(success=f"{successes}/{len(indexed)}")
    indexed.sort(key=lambda item: (item[1].family, item[1].seed, item[0]))
    return [result for _, result in indexed]


def validate_request(specs: Sequence[EpisodeSpec], agent_name: str, workers: int | None) -> None:
    if agent_name not in AGENTS:
        raise EvaluationError(f"unknown agent {agent_name!r}; choose from {', '.join(sorted(AGENTS))}")
    if workers is not None and workers <= 0:
        raise EvaluationError(f"workers must be positive, got {workers}")
    if not specs:
        raise EvaluationError("no episodes to run")
    for spec in specs:
        if spec.family not in TASKS:
            raise EvaluationError(f"unknown family {spec.family!r}; choose from {', '.join(sorted(TASKS))}")


def build_agent(agent_name: str, agent_kwargs: dict) -> Agent:
    """``make_agent``, with an agent that cannot be built from these arguments as an :class:`EvaluationError`."""
    try:
        return make_agent(agent_name, **agent_kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise EvaluationError(f"agent {agent_name!r} cannot be built from {agent_kwargs}: {_one_line(err)}") from None


def _run_all(specs: list[EpisodeSpec], agent_name: str, agent_kwargs: dict, executor: Executor, agent: Agent,
             batch_size: int | None = None, record: BagOptions | None = None) -> Iterable[tuple[int, EpisodeResult]]:
    """``(index, result)`` as the executor's batches finish; an inline run reuses ``agent``."""
    log_level = logging.getLogger().getEffectiveLevel()
    task = WorkerTask(_new_runner, _run_one, (agent_name, agent_kwargs, log_level, record), _close_runner,
                      local_state=EpisodeRunner(agent_name, agent_kwargs, agent, record))
    try:
        yield from executor.imap_unordered(task, specs, batch_size)
    finally:
        task.local_state.close()


class _NullBar:
    def update(self, n: int) -> None: ...

    def set_postfix(self, **kwargs) -> None: ...

    def __enter__(self) -> "_NullBar":
        return self

    def __exit__(self, *exc) -> None: ...


def _progress_bar(total: int, label: str, enabled: bool):
    if not enabled:
        return _NullBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="ep", dynamic_ncols=True)


# --- statistics --------------------------------------------------------------------------------
def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a success rate (95 % for z = 1.96); (0, 1) when n = 0."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    rate = successes / n
    denominator = 1 + z**2 / n
    centre = (rate + z**2 / (2 * n)) / denominator
    half_width = z * math.sqrt(rate * (1 - rate) / n + z**2 / (4 * n**2)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


@dataclass(frozen=True)
class SummaryRow:
    family: str  # a task family, or "all"
    n: int
    successes: int
    rate: float
    lo: float  # Wilson 95 % interval
    hi: float
    mean_wall_time_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(results: Sequence[EpisodeResult]) -> list[SummaryRow]:
    """One row per family (sorted by name), then the overall row."""
    groups: dict[str, list[EpisodeResult]] = {}
    for result in results:
        groups.setdefault(result.family, []).append(result)
    rows = [_row(family, groups[family]) for family in sorted(groups)]
    rows.append(_row(OVERALL, list(results)))
    return rows


def _row(family: str, results: list[EpisodeResult]) -> SummaryRow:
    n = len(results)
    successes = sum(r.success for r in results)
    lo, hi = wilson_interval(successes, n)
    mean_wall = sum(r.wall_time_s for r in results) / n if n else 0.0
    return SummaryRow(family, n, successes, successes / n if n else 0.0, lo, hi, mean_wall)


def format_table(rows: Sequence[SummaryRow]) -> str:
    """A plain-text table: family, episodes, successes, rate with its 95 % interval, time per episode."""
    header = ("family", "n", "success", "rate", "95% CI", "wall s/ep")
    lines = [
        (r.family, str(r.n), str(r.successes), f"{r.rate:.1%}", f"[{r.lo:.1%}, {r.hi:.1%}]",
         f"{r.mean_wall_time_s:.2f}")
        for r in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]

    def render(cells) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True))])

    rule = "-" * len(render(header))
    body = [render(line) for line in lines]
    if len(body) > 1:
        body.insert(len(body) - 1, rule)  # above the overall row
    return "\n".join([render(header), rule, *body])


def compare_table(documents: Sequence[dict], labels: Sequence[str] | None = None) -> str:
    """Results documents (:func:`write_results`) side by side: per family, successes/episodes and the
    rate with its 95 % interval in each; columns are labelled by ``labels`` or each run's agent."""
    labels = list(labels or [_run_label(d) for d in documents])
    summaries = [{row["family"]: row for row in d["summary"]} for d in documents]
    families = sorted({f for s in summaries for f in s if f != OVERALL}) + [OVERALL]

    def cell(row: dict | None) -> str:
        if row is None:
            return "—"
        return f"{row['successes']}/{row['n']}  {row['rate']:.1%} [{row['lo']:.0%}, {row['hi']:.0%}]"

    lines = [[f, *(cell(s.get(f)) for s in summaries)] for f in families]
    header = ["family", *labels]
    widths = [max(len(c) for c in column) for column in zip(header, *lines, strict=True)]

    def render(cells) -> str:
        return "  ".join([cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:],
                                                                                  strict=True))])

    rule = "-" * len(render(header))
    body = [render(line) for line in lines]
    body.insert(len(body) - 1, rule)
    return "\n".join([render(header), rule, *body])


def _run_label(document: dict) -> str:
    meta = document.get("meta", {})
    via = " via ROS graph" if meta.get("via") == "ros-graph" else ""
    return f"{meta.get('agent', '?')}{via}"


# --- results files -----------------------------------------------------------------------------
def git_revision(repo: Path | None = None) -> str | None:
    """``HEAD``'s commit (with ``-dirty`` if the tree has changes), or None outside a git checkout."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def write_results(path: str | Path, results: Sequence[EpisodeResult], meta: dict) -> Path:
    """Write ``{"meta", "summary", "episodes"}`` JSON atomically; ``meta`` gains a timestamp and the
    git revision when it lacks them."""
    path = Path(path)
    meta = dict(meta)
    meta.setdefault("timestamp", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    meta.setdefault("git_revision", git_revision())
    document = {
        "meta": meta,
        "summary": [row.to_dict() for row in summarize(results)],
        "episodes": [result.to_dict() for result in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        json.dump(document, tmp, indent=2)
        tmp.write("\n")
    os.replace(tmp.name, path)
    logger.info("wrote %d episode results to %s", len(results), path)
    return path


# --- contact sheet -----------------------------------------------------------------------------
def spread_over_families(specs: Sequence[EpisodeSpec], count: int) -> list[EpisodeSpec]:
    """The first ``count`` episodes taking families in turn, so a short sheet shows every family."""
    by_family: dict[str, list[EpisodeSpec]] = {}
    for spec in specs:
        by_family.setdefault(spec.family, []).append(spec)
    order = sorted(
        (i, family_index, spec)
        for family_index, family_specs in enumerate(by_family.values())
        for i, spec in enumerate(family_specs)
    )
    return [spec for _, _, spec in order[:count]]


def contact_sheet(path: str | Path, episodes: Sequence[EpisodeSpec], agent_name: str = "oracle",
                  agent_kwargs: dict | None = None) -> Path:
    """Re-run ``episodes`` in this process and save a PNG: first and last RGB frame of each, labelled
    with the instruction and the outcome."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runner = EpisodeRunner(agent_name, agent_kwargs)
    try:
        rows = [runner.run_with_frames(spec) for spec in episodes]
    finally:
        runner.close()

    figure = Figure(figsize=(6.4, 2.8 * len(rows)), dpi=100)
    FigureCanvasAgg(figure)
    for i, (result, first_rgb, last_rgb) in enumerate(rows):
        outcome = "success" if result.success else f"failure: {result.failure_reason}"
        titles = (
            (f"{result.family} seed {result.seed}\n" + textwrap.fill(f'"{result.instruction}"', 48), "black"),
            ("last frame\n" + textwrap.fill(outcome, 48), "tab:green" if result.success else "tab:red"),
        )
        for j, (rgb, (title, colour)) in enumerate(zip((first_rgb, last_rgb), titles, strict=True)):
            axis = figure.add_subplot(len(rows), 2, 2 * i + j + 1)
            axis.set_axis_off()
            if rgb is not None:
                axis.imshow(rgb)
            axis.set_title(title, fontsize=7, color=colour)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    logger.info("wrote a contact sheet of %d episodes to %s", len(rows), path)
    return path


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__
