"""eval-forecast: PointMotionBench-style metrics of every backend on a generated split, plus grounding accuracy.

    molmomotion eval-forecast --models fm,ar,stationary,constant-velocity --split test

Ground truth is the fixed-stride future of the query points (the stride of the neural models'
checkpoints, 2 frames of the 15 fps track), in the camera frame at t0. Writes a JSON, prints a
table and saves an overlay PNG of the first episodes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from molmomotion_ros.phrasings import PhrasingError, PhrasingSet, check_split_allowed, load_phrasing_set

from . import metrics
from .interface import make_forecaster, validate_request
from .motion_type import REFUSED, confusion, format_confusion, motion_type

logger = logging.getLogger(__name__)
GROUND_TRUTH = "ground-truth"  # the motion-type row of the recorded tracks, to check the classifier itself


class EvaluationError(ValueError):
    """The dataset cannot be scored as asked (e.g. re-phrased without recorded phrase fields)."""


def _to_world(points_cam_m: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    return points_cam_m @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]


def episode_instruction(meta: dict, phrasing_set: PhrasingSet | None) -> str:
    """The recorded instruction, or the episode re-phrased by ``phrasing_set`` from its recorded phrase fields
    (the same sentence sim-eval gives that (family, seed) with the set)."""
    if phrasing_set is None:
        return meta["instruction"]
    if "phrase_fields" not in meta:
        raise EvaluationError("the dataset records no phrase fields (made before they were stored); regenerate it "
                              "with `molmomotion generate-data` to re-phrase its episodes")
    return phrasing_set.phrase(meta["family"], meta["seed"], meta["phrase_fields"])


def _phrasing_source(data, phrasing_set: PhrasingSet | None) -> dict:
    if phrasing_set is not None:
        return {**phrasing_set.describe(), "applied": "re-phrased at evaluation"}
    recorded = data.config.get("task_options", {}).get("phrasing_set")
    if recorded:
        try:
            return {**load_phrasing_set(recorded).describe(), "applied": "recorded in the dataset"}
        except PhrasingError:  # a relative path from another working directory: the name still says what it was
            return {"name": recorded, "source": None, "held_out": None, "applied": "recorded in the dataset"}
    return {"name": "vocabulary", "source": "config/vocabulary.yaml", "held_out": False, "applied": "recorded"}


def _ground_truth_cam(ep: dict, stride: int, horizon: int) -> np.ndarray:
    from .training import fixed_stride_future

    world = fixed_stride_future(ep, stride, horizon)  # (P, F, 3)
    T_cam_world = np.linalg.inv(ep["T_world_cam"])
    return world @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]


def _select(data, episodes_per_family: int | None) -> list[int]:
    if episodes_per_family is None:
        return list(range(len(data)))
    taken: dict[str, int] = {}
    chosen = []
    for i, meta in enumerate(data.meta):
        family = meta["family"]
        if taken.get(family, 0) < episodes_per_family:
            taken[family] = taken.get(family, 0) + 1
            chosen.append(i)
    return chosen


class EpisodeScorer:
    """What scores one episode: the dataset, every backend, the grounding model, the phrasing set. Built once per
    worker (:class:`~molmomotion_ros.execution.WorkerTask` ``init``) and reused for every episode it is sent."""

    def __init__(self, data_dir: str | Path, backends: list[str], num_samples: int = 8, horizon: int = 32,
                 stride: int = 2, phrasings: str | None = None,
                 read_instruction: Callable[[str], object] | None = None, log_level: int | None = None):
        import torch

        from molmomotion_ros.motion_data import MotionDataset

        if log_level is not None:
            logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
        # One torch thread wherever an episode is scored: a forecast's last bits depend on the thread count, and a
        # Ray worker gets one (OMP_NUM_THREADS = its CPUs), so this keeps the report the same on every executor
        # and machine (and the latencies single-threaded).
        torch.set_num_threads(1)
        self.data = MotionDataset(data_dir, only_success=True)
        self.phrasing_set = None if phrasings is None else load_phrasing_set(phrasings)
        self.num_samples, self.horizon, self.stride = num_samples, horizon, stride
        self.read_instruction = read_instruction
        self.forecasters = {name: make_forecaster(name) for name in backends}
        self.grounding_model = None
        try:
            from .predictor import GroundingModel

            self.grounding_model = GroundingModel()
        except Exception as err:  # the base checkpoint is optional for this report
            logger.warning("grounding not evaluated: %s", err)

    def model_ids(self) -> dict[str, str]:
        return {name: f.backend.model_id for name, f in self.forecasters.items()}

    def score(self, index: int, overlay: bool = False) -> dict:
        """Episode ``index``: the ground truth's motion type, then (unless the instruction is refused) each backend's
        motion type, metrics at K = 1 and K = ``num_samples`` and latency, and whether grounding hit the target;
        with ``overlay``, what an overlay of the fm/ar forecasts needs."""
        ep = self.data.episode(index)
        family = ep["meta"]["family"]
        instruction = episode_instruction(ep["meta"], self.phrasing_set)
        gt = _ground_truth_cam(ep, self.stride, self.horizon)
        valid = np.ones(self.horizon, dtype=bool)
        start_world = _to_world(ep["points_cam_m"], ep["T_world_cam"])  # (P, 3)
        score: dict = {"family": family, "truth": motion_type(_to_world(gt, ep["T_world_cam"]), start_world),
                       "refusal": None, "backends": {}, "grounding_hit": None, "overlays": [],
                       "model_ids": self.model_ids()}
        if self.read_instruction is not None:
            understood = self.read_instruction(instruction)
            if not isinstance(understood, str):
                score["refusal"] = {"seed": ep["meta"]["seed"], "family": family, "instruction": instruction,
                                    "kind": understood.kind, "reason": understood.reason}
                return score
            instruction = understood
        request = validate_request(ep["rgb"], ep["depth_m"], ep["K"], ep["T_world_cam"], ep["points_uv"],
                                   ep["points_history_cam_m"], instruction, self.horizon, self.num_samples)
        for name, forecaster in self.forecasters.items():
            one = forecaster.predict_request(_with_samples(request, 1))
            track_world = _to_world(one.points_cam_m[0], ep["T_world_cam"])  # (P, F, 3), the published hypothesis
            start = time.perf_counter()
            many = forecaster.predict_request(request)
            score["backends"][name] = {
                "motion": motion_type(track_world, start_world), "ms": (time.perf_counter() - start) * 1000,
                "k1": metrics.summarize(one.points_cam_m, gt, valid, ep["points_cam_m"]),
                "kK": metrics.summarize(many.points_cam_m, gt, valid, ep["points_cam_m"])}
            if overlay and name in ("fm", "ar"):
                shown = {"rgb": ep["rgb"][-1:], "K": ep["K"], "points_uv": ep["points_uv"], "meta": ep["meta"]}
                score["overlays"].append((name, shown, many.points_cam_m, gt, instruction))
        if self.grounding_model is not None:
            heat = self.grounding_model.heatmaps(ep["rgb"][-1], ep["depth_m"][-1], ep["K"], instruction)
            v, u = np.unravel_index(int(np.argmax(heat[0])), heat[0].shape)
            score["grounding_hit"] = bool(ep["segmentation"][v, u] == ep["target_body_id"])
        return score


def _new_scorer(*args) -> EpisodeScorer:
    return EpisodeScorer(*args)


def _score_one(scorer: EpisodeScorer, item: tuple[int, bool]) -> dict:
    return scorer.score(*item)


def evaluate_forecasters(data_dir: str | Path, backends: list[str], out_dir: str | Path, num_samples: int = 8,
                         episodes_per_family: int | None = None, progress: bool = True, horizon: int = 32,
                         stride: int = 2, overlays_per_family: int = 2, phrasings: str | None = None,
                         read_instruction: Callable[[str], object] | None = None, executor=None,
                         batch_size: int | None = None) -> dict:
    """Metrics per backend for K = 1 and K = ``num_samples`` (best-of-K and mean-of-K); grounding accuracy; the
    motion type of each backend's K = 1 forecast per family. ``phrasings`` (a phrasing set's name or path)
    re-phrases every episode's instruction first, e.g. "heldout" for the held-out language test.
    ``read_instruction`` (e.g. ``molmomotion_ros.language.instruction_for_model``, which sits above this layer)
    reads each instruction first, as the nodes do: it returns the text the models get, or a refusal (an object
    with ``kind`` and ``reason``), which counts as motion type "refused" for every backend (a miss, never a
    guessed motion) and is left out of the track metrics.

    ``executor`` (:mod:`molmomotion_ros.execution`; default: this process) scores the episodes on its workers,
    ``batch_size`` at a time; each episode is scored alone, so the report is the same whatever the executor,
    the worker count and the batches (the latencies aside: they are timed wherever the episode ran)."""
    from tqdm import tqdm

    from molmomotion_ros.execution import LocalExecutor, WorkerTask
    from molmomotion_ros.motion_data import MotionDataset

    named = str(data_dir)  # the report says the folder as it was given
    data_dir = Path(data_dir).expanduser().resolve()  # workers elsewhere get an absolute path
    data = MotionDataset(data_dir, only_success=True)
    phrasing_set = None if phrasings is None else load_phrasing_set(phrasings)
    if phrasing_set is not None:
        check_split_allowed(phrasing_set, data.manifest.get("split", ""))
    indices = _select(data, episodes_per_family)
    executor = executor or LocalExecutor(1)
    # Overlays: the first ``overlays_per_family`` scored episodes per family (more are asked for when the parser
    # may refuse some of them, so that refused ones can be skipped as a single pass would).
    asked = overlays_per_family * (3 if read_instruction is not None else 1)
    taken: dict[str, int] = {}
    items = []
    for i in indices:
        family = data.meta[i]["family"]
        taken[family] = taken.get(family, 0) + 1
        items.append((i, taken[family] <= asked))
    args = (str(data_dir), list(backends), num_samples, horizon, stride, phrasings, read_instruction,
            logging.getLogger().getEffectiveLevel())
    # One local worker scores in this process (as before the executor existed), with a scorer built here.
    local = EpisodeScorer(*args) if executor.name == "local" and executor.workers == 1 else None
    task = WorkerTask(_new_scorer, _score_one, args, name="eval-forecast", local_state=local)
    scores: list[dict | None] = [None] * len(items)
    with tqdm(total=len(items), desc="eval-forecast", unit="ep", disable=not progress) as bar:
        for position, score in executor.imap_unordered(task, items, batch_size):
            scores[position] = score
            bar.update(1)
    gathered, overlay_items = _gather(scores, list(backends), num_samples, overlays_per_family)
    report = {
        "data": named, "episodes": len(indices), "num_samples": num_samples, "horizon": horizon,
        "stride": stride, "summary": gathered["summary"], "grounding_accuracy": gathered["grounding_accuracy"],
        "model_ids": local.model_ids() if local is not None else gathered["model_ids"],
        "phrasings": _phrasing_source(data, phrasing_set), "motion_types": gathered["motion_types"],
        "instruction_parser": read_instruction is not None, "refusals": gathered["refusals"],
        "executor": executor.describe(),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "forecast-eval.json").write_text(json.dumps(report, indent=1, default=float))
    print(format_table(report))
    print(format_confusion(report["motion_types"]))
    if overlay_items:
        _save_overlays(out_dir / "forecast-overlays.png", overlay_items)
    return report


def _gather(scores: list[dict], backends: list[str], num_samples: int, overlays_per_family: int) -> tuple[dict, list]:
    """The episodes' scores, in dataset order, gathered as one pass over them would."""
    motions: dict[str, list[tuple[str, str]]] = {name: [] for name in (GROUND_TRUTH, *backends)}
    results: dict[str, dict] = {name: {"k1": [], f"k{num_samples}": [], "ms": []} for name in backends}
    grounding_hits, grounding_total = 0, 0
    refusals: list[dict] = []
    overlay_items = []
    for score in scores:
        family = score["family"]
        motions[GROUND_TRUTH].append((family, score["truth"]))
        if score["refusal"] is not None:
            refusals.append(score["refusal"])
            for name in backends:
                motions[name].append((family, REFUSED))
            continue
        for name in backends:
            b = score["backends"][name]
            motions[name].append((family, b["motion"]))
            results[name]["ms"].append(b["ms"])
            results[name]["k1"].append(b["k1"])
            results[name][f"k{num_samples}"].append(b["kK"])
        for item in score["overlays"]:
            name = item[0]
            shown = sum(1 for o in overlay_items if o[0] == name and o[1]["meta"]["family"] == family)
            if shown < overlays_per_family:
                overlay_items.append(item)
        if score["grounding_hit"] is not None:
            grounding_hits += int(score["grounding_hit"])
            grounding_total += 1
    summary = {}
    for name, r in results.items():
        # Every episode refused: nothing to score (the refusals and the motion-type table say why).
        summary[name] = {key: metrics.aggregate(rows) if rows else None for key, rows in r.items() if key != "ms"}
        summary[name]["latency_ms_p50"] = float(np.median(r["ms"])) if r["ms"] else None
    return {"summary": summary, "grounding_accuracy": grounding_hits / grounding_total if grounding_total else None,
            "model_ids": scores[0]["model_ids"] if scores else {},
            "motion_types": {name: confusion(rows) for name, rows in motions.items()},
            "refusals": refusals}, overlay_items


def _with_samples(request, k: int):
    from dataclasses import replace

    return replace(request, num_samples=k)


def format_table(report: dict) -> str:
    k = report["num_samples"]
    lines = [f"{'backend':<18} {'ADE@1':>7} {'FDE@1':>7} {'PWT@1':>6} {'ADE best@' + str(k):>11} "
             f"{'FDE best@' + str(k):>11} {'ADE mean@' + str(k):>11} {'PWT best@' + str(k):>10} {'rigid@1':>8} "
             f"{'p50 ms':>7}"]
    lines.append("-" * len(lines[0]))
    for name, s in report["summary"].items():
        one, many = s["k1"], s[f"k{k}"]
        if one is None:
            lines.append(f"{name:<18} no forecasts (every instruction refused)")
            continue
        lines.append(f"{name:<18} {one['ade_best']:>7.4f} {one['fde_best']:>7.4f} {one['pwt_best']:>6.3f} "
                     f"{many['ade_best']:>11.4f} {many['fde_best']:>11.4f} {many['ade_mean']:>11.4f} "
                     f"{many['pwt_best']:>10.3f} {one['rigidity_best']:>8.4f} {s['latency_ms_p50']:>7.1f}")
    if report.get("grounding_accuracy") is not None:
        lines.append(f"grounding: heat-map argmax on the target in {report['grounding_accuracy']:.1%} "
                     f"of {report['episodes']} frames")
    phrasings = report.get("phrasings")
    if phrasings is not None:
        lines.append(f"instructions: {phrasings['name']} phrasings ({phrasings['applied']})")
    if report.get("instruction_parser"):
        refused = len(report.get("refusals", []))
        lines.append(f"instruction parser on: {refused} of {report['episodes']} instructions refused"
                     + (f" (scored on the other {report['episodes'] - refused})" if refused else ""))
    lines.append("metres, camera frame at t0; ADE/FDE lower is better, PWT higher is better")
    return "\n".join(lines)


def _save_overlays(path: Path, items) -> None:
    try:
        from .visualize import overlay_forecast
    except ImportError:
        logger.warning("no overlay PNG: visualize.py is missing")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    for name, ep, pred, gt, instruction in items:
        title = f"{name}: {instruction}"
        fig = overlay_forecast(ep["rgb"][-1], ep["K"], pred, gt, ep["points_uv"], title)
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3])
        plt.close(fig)
    cols = min(4, len(images))
    rows = (len(images) + cols - 1) // cols
    h, w = images[0].shape[:2]
    sheet = np.full((rows * h, cols * w, 3), 255, dtype=np.uint8)
    for j, img in enumerate(images):
        r, c = divmod(j, cols)
        sheet[r * h : r * h + img.shape[0], c * w : c * w + img.shape[1]] = img[:h, :w]
    plt.imsave(path, sheet)
