"""The motion-data format: compressed shards of MolmoMotion-style forecasting samples, a manifest, and
:class:`MotionDataset`, which reads them back as torch tensors.

The harness writes this format (``molmomotion_sim.dataset`` generates, ``molmomotion_sim.recording``
records an episode) and the forecasters' training and evaluation read it, so it lives in the core: a
reader needs neither the simulator nor its dependencies. Layout, frames and units: ``docs/dataset.md``.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SHARD_STEM = "shard-{:05d}"
FUTURES = ("dense", "strided")
# Per-episode arrays whose first axis varies: padded by repeating the last row (trace) or with a fill value.
TRACE_KEYS = {"trace_time_s", "ee_pose", "gripper_width_m", "gripper_closed_cmd", "joint_positions_rad",
              "target_pose"}
RAGGED_FILL = {"other_body_ids": -1, "other_poses_t0": np.nan, "other_poses_final": np.nan,
               "frames_rgb": 0, "frames_depth_m": np.nan, "frames_trace_index": -1}


class DatasetError(ValueError):
    """Bad generation arguments, an unusable output directory, or a missing/incompatible dataset."""


def pad_edge(arrays: list[np.ndarray], length: int) -> np.ndarray:
    """Stack arrays of shape (T_i, ...) to (N, length, ...), repeating each one's last row."""
    return np.stack([np.concatenate([a, np.repeat(a[-1:], length - len(a), axis=0)]) for a in arrays])


# --- shards -------------------------------------------------------------------------------------
def write_shard(out_dir: Path, index: int, records: list[dict]) -> dict:
    """Stack the records' arrays into ``shard-NNNNN.npz`` and their metadata into ``shard-NNNNN.json``.

    Per-episode arrays whose first axis varies (trace T, others O, frames K) are padded to the
    shard's longest by repeating the last row (others/frames: NaN/zeros/-1, see docs) and come with
    a length: ``trace_length``, ``num_others``, ``num_frames``.
    """
    stem = SHARD_STEM.format(index)
    arrays: dict[str, np.ndarray] = {}
    keys = records[0]["arrays"].keys()
    for key in keys:
        items = [r["arrays"][key] for r in records]
        if key in TRACE_KEYS:
            arrays[key] = pad_edge(items, max(len(a) for a in items))
        elif key in RAGGED_FILL:
            longest = max(len(a) for a in items)
            fill = RAGGED_FILL[key]
            arrays[key] = np.stack([
                np.concatenate([a, np.full((longest - len(a),) + a.shape[1:], fill, a.dtype)]) for a in items
            ])
        else:
            arrays[key] = np.stack(items)
    arrays["num_others"] = np.array([len(r["arrays"]["other_body_ids"]) for r in records], np.int32)
    if "frames_trace_index" in keys:
        arrays["num_frames"] = np.array([len(r["arrays"]["frames_trace_index"]) for r in records], np.int32)
    tmp = out_dir / f".{stem}.npz.tmp"
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(tmp, out_dir / f"{stem}.npz")
    meta = {"schema_version": SCHEMA_VERSION, "episodes": [r["meta"] for r in records]}
    (out_dir / f"{stem}.json").write_text(json.dumps(meta, indent=1))
    return {"npz": f"{stem}.npz", "json": f"{stem}.json", "episodes": len(records),
            "bytes": (out_dir / f"{stem}.npz").stat().st_size + (out_dir / f"{stem}.json").stat().st_size}


def read_shard(root: str | Path, npz_name: str) -> tuple[dict[str, np.ndarray], list[dict]]:
    """All arrays of one shard (decompressed) and its per-episode metadata."""
    root = Path(root)
    npz_path, json_path = root / npz_name, root / npz_name.replace(".npz", ".json")
    try:
        with np.load(npz_path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read shard {npz_path.name} in {root}: {err}") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"shard {json_path.name} has schema {meta.get('schema_version')}, expected {SCHEMA_VERSION}")
    return arrays, meta["episodes"]


# --- loading ------------------------------------------------------------------------------------
def load_manifest(root: str | Path) -> dict:
    """The manifest of the dataset at ``root``; DatasetError if missing, unreadable or incompatible."""
    root = Path(root)
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"no {MANIFEST} in {root} (not a dataset, or generation did not finish)") from None
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{path} has schema version {manifest.get('schema_version')}, "
                           f"this code reads {SCHEMA_VERSION}")
    names = [name for shard in manifest.get("shards", []) for name in (shard["npz"], shard["json"])]
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        raise DatasetError(f"dataset {root} lacks {len(missing)} shard file(s), e.g. {missing[0]}")
    return manifest


class MotionDataset:
    """A map-style dataset of forecasting samples from a generated directory (torch's DataLoader takes it).

    ``future`` picks the dense (15 fps, F steps after t0) or strided (F steps of ``stride`` samples
    covering the whole motion) trajectories; ``only_success`` drops episodes the oracle failed.
    Items are dicts of tensors (layouts in ``__getitem__`` and docs/dataset.md) plus the
    instruction, family and seed. ``episode(i)`` gives every stored array as numpy. torch is imported
    only by ``__getitem__``, so numpy-only readers (and generation workers) never load it.
    """

    def __init__(self, root: str | Path, future: str = "dense", only_success: bool = True,
                 max_cached_shards: int = 8):
        if future not in FUTURES:
            raise DatasetError(f"future must be one of {FUTURES}, got {future!r}")
        self.root = Path(root)
        self.future = future
        self.manifest = load_manifest(self.root)
        self.config = self.manifest["config"]
        self.max_cached_shards = max(1, max_cached_shards)
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self.index: list[tuple[int, int]] = []  # (shard, row)
        self.meta: list[dict] = []
        for shard_no, shard in enumerate(self.manifest["shards"]):
            try:
                episodes = json.loads((self.root / shard["json"]).read_text())["episodes"]
            except (OSError, ValueError, KeyError) as err:
                raise DatasetError(f"cannot read {shard['json']} in {self.root}: {err}") from None
            for row, meta in enumerate(episodes):
                if meta["success"] or not only_success:
                    self.index.append((shard_no, row))
                    self.meta.append(meta)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()  # DataLoader workers (spawn) start with an empty shard cache
        state["_cache"] = OrderedDict()
        return state

    def _shard(self, shard_no: int) -> dict[str, np.ndarray]:
        if shard_no in self._cache:
            self._cache.move_to_end(shard_no)
        else:
            self._cache[shard_no], _ = read_shard(self.root, self.manifest["shards"][shard_no]["npz"])
            while len(self._cache) > self.max_cached_shards:
                self._cache.popitem(last=False)
        return self._cache[shard_no]

    def episode(self, i: int) -> dict[str, Any]:
        """Every stored array of episode ``i`` (numpy, padding trimmed) plus its metadata under "meta"."""
        shard_no, row = self.index[i]
        arrays = self._shard(shard_no)
        out = {k: v[row] for k, v in arrays.items()}
        trace_length, num_others = int(out["trace_length"]), int(out["num_others"])
        for key in TRACE_KEYS:
            out[key] = out[key][:trace_length]
        for key in ("other_body_ids", "other_poses_t0", "other_poses_final"):
            out[key] = out[key][:num_others]
        if "num_frames" in out:
            for key in ("frames_rgb", "frames_depth_m", "frames_trace_index"):
                out[key] = out[key][: int(out["num_frames"])]
        out["meta"] = self.meta[i]
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        def t(array: np.ndarray) -> torch.Tensor:  # a copy: items never alias the shard cache
            return torch.from_numpy(np.array(array, copy=True))

        ep = self.episode(i)
        f = self.future
        stride = 1 if f == "dense" else int(ep["future_stride"])
        steps = np.arange(1, self.config["horizon"] + 1)
        return {
            "rgb": t(ep["rgb"].transpose(0, 3, 1, 2)),  # (H, 3, h, w) uint8
            "depth": t(ep["depth_m"]),  # (H, h, w) float32 metres, NaN = no return
            "target_mask": t(ep["target_mask"]),  # (h, w) bool, at t0
            "points_2d": t(ep["points_uv"]),  # (P, 2) float32 pixels (u right, v down) at t0
            "points_3d_cam": t(ep["points_cam_m"]),  # (P, 3) camera frame at t0
            "points_3d_history_cam": t(ep["points_history_cam_m"]),  # (H, P, 3)
            "future_cam": t(ep[f"future_{f}_cam_m"][:, 1:]),  # (P, F, 3) camera frame at t0, steps 1..F
            "future_world": t(ep[f"future_{f}_world_m"][:, 1:]),  # (P, F, 3) world frame
            "future_valid": t(ep[f"future_{f}_valid"][1:]),  # (F,) bool, False = padded past the episode
            "future_time_s": t((steps * stride / self.config["trace_hz"]).astype(np.float32)),  # (F,) after t0
            "stride": torch.tensor(stride),  # trace samples per future step (1 = 15 fps)
            "K": t(ep["K"].astype(np.float32)),  # (3, 3)
            "T_world_cam": t(ep["T_world_cam"].astype(np.float32)),  # (4, 4)
            "goal_center_cam": t(ep["goal_center_cam_m"]),  # (3,) NaN when the task has no goal point
            "goal_center_world": t(ep["goal_center_world_m"]),  # (3,)
            "success": torch.tensor(bool(ep["success"])),
            "seed": int(ep["seed"]),
            "family": ep["meta"]["family"],
            "instruction": ep["meta"]["instruction"],
        }
