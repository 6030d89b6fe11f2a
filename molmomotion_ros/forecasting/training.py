"""Training of the base (grounding) encoder and the AR / FM forecasters on the harness's motion data.

    molmomotion train --model base --data data/train --val data/validation --steps 3000
    molmomotion train --model fm --data data/train --init molmomotion_ros/checkpoints/base.pt
    molmomotion train --model base-pool --data data/train --init stage1.pt --out base_matched.pt

``base-pool`` is the protocol's compute-matched base (policies/protocol.yaml, ``base_matched``): grounding plus
the pool objective (:class:`~.models.PoolPositionHead`: the global feature regressed to the target's and goal's
camera-frame positions), trained like ``fm`` (from ``--init``, the CNN trunk frozen), saved as a ``base``
checkpoint without the regression layer.

Deterministic for a seed (data order, noise, initialisation), resumable (``<out>.state`` keeps the
optimiser), CUDA + bf16 autocast when available, CPU otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .models import (
    MOTION_SCALE_M,
    ForecasterConfig,
    ForecasterModel,
    PoolPositionHead,
    grounding_loss,
    make_image_input,
)
from .preprocess import depth_to_xyz_cam, grounding_targets, pixels_to_model, resize_inputs
from .text import default_text_encoder

logger = logging.getLogger(__name__)
CACHE_VERSION = 1
MODEL_KINDS = ("base", "fm", "ar", "base-pool")


class TrainingError(ValueError):
    """Bad training input: a missing dataset, an incompatible initial checkpoint, a bad setting."""


@dataclass
class TensorSet:
    """A motion dataset preprocessed for one model input size, stride and horizon, held in memory."""

    rgb: torch.Tensor  # (N, 3, h, w) uint8
    xyz: torch.Tensor  # (N, 3, h, w) float32 camera frame, NaN = none
    grounding: torch.Tensor  # (N, 2, h/2, w/2) target / goal distributions
    points_uv: torch.Tensor  # (N, P, 2) model-input pixels
    points_cam: torch.Tensor  # (N, P, 3) metres at t0
    future_cam: torch.Tensor  # (N, P, F, 3) metres, steps 1..F at the stride
    text_index: torch.Tensor  # (N,) into instructions
    instructions: list[str]
    families: list[str]
    target_ids: torch.Tensor  # (N,) body id of the target
    segmentation: torch.Tensor  # (N, H, W) int16 at camera resolution (grounding evaluation)
    manifest_hash: str
    # Only with build_tensor_set(positions=True) (the pool objective), cached in a file of their own:
    target_cam: torch.Tensor | None = None  # (N, 3) the target's origin at t0, camera frame
    goal_cam: torch.Tensor | None = None  # (N, 3) the goal point, camera frame, NaN = the task has none

    def __len__(self) -> int:
        return int(self.rgb.shape[0])


def fixed_stride_future(ep: dict, stride: int, horizon: int) -> np.ndarray:
    """Future world positions (P, F, 3) at trace samples stride*1..stride*F (held after the trace ends)."""
    poses = ep["target_pose"]  # (T, 7)
    idx = np.minimum(np.arange(1, horizon + 1) * stride, len(poses) - 1)
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_quat(poses[idx, 3:]).as_matrix()  # (F, 3, 3)
    local = ep["points_local_m"]  # (P, 3)
    return np.einsum("fij,pj->pfi", rot, local) + poses[idx, None, :3].transpose(1, 0, 2)


def build_tensor_set(data_dir: str | Path, cfg: ForecasterConfig, only_success: bool = True,
                     positions: bool = False) -> TensorSet:
    """Load (and cache next to the data) a dataset as in-memory tensors for ``cfg``; with ``positions`` the target's
    and goal's camera-frame positions too (the pool objective), cached in a file of their own so the main cache
    keeps the fields every version of this code reads."""
    from molmomotion_ros.motion_data import load_manifest

    data_dir = Path(data_dir)
    try:
        manifest = load_manifest(data_dir)
    except Exception as err:  # DatasetError and friends: one clear line for the CLI
        raise TrainingError(f"cannot read the dataset in {data_dir}: {err}") from None
    enc = cfg.encoder
    key = json.dumps([CACHE_VERSION, manifest["config_hash"], manifest.get("seeds"), enc.input_width,
                      enc.input_height, cfg.stride, cfg.fm.horizon, only_success], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache = data_dir / f"cache-forecast-{digest}.pt"
    tensors = TensorSet(**torch.load(cache, weights_only=False)) if cache.is_file() else None
    if tensors is None:
        tensors = _build_tensors(data_dir, manifest, cfg, only_success, cache)
    if not positions:
        return tensors
    position_cache = data_dir / f"cache-positions-{digest}.pt"
    if position_cache.is_file():
        stored = torch.load(position_cache, weights_only=False)
    else:
        stored = _target_and_goal_positions(data_dir, only_success)
        torch.save(stored, position_cache)
    return replace(tensors, **stored)


def _target_and_goal_positions(data_dir: Path, only_success: bool) -> dict[str, torch.Tensor]:
    """Per episode (the order of :class:`MotionDataset`): the target's origin at t0 and the goal point, camera frame."""
    from molmomotion_ros.motion_data import MotionDataset

    data = MotionDataset(data_dir, only_success=only_success)
    target, goal = [], []
    for i in range(len(data)):
        ep = data.episode(i)
        T_cam_world = np.linalg.inv(ep["T_world_cam"])
        target.append(T_cam_world[:3, :3] @ ep["target_pose"][0, :3] + T_cam_world[:3, 3])
        goal.append(ep["goal_center_cam_m"])
    return {"target_cam": torch.from_numpy(np.array(target, np.float32)).reshape(-1, 3),
            "goal_cam": torch.from_numpy(np.array(goal, np.float32)).reshape(-1, 3)}


def _build_tensors(data_dir: Path, manifest: dict, cfg: ForecasterConfig, only_success: bool,
                   cache: Path) -> TensorSet:
    from molmomotion_ros.motion_data import MotionDataset

    enc = cfg.encoder
    data = MotionDataset(data_dir, only_success=only_success)
    rows: dict[str, list] = {k: [] for k in ("rgb", "xyz", "grounding", "points_uv", "points_cam", "future_cam",
                                             "text", "family", "target", "seg")}
    size = (enc.input_width, enc.input_height)
    from tqdm import tqdm

    for i in tqdm(range(len(data)), desc=f"preparing {data_dir.name}", unit="ep", leave=False):
        ep = data.episode(i)
        K, T_world_cam = ep["K"], ep["T_world_cam"]
        h, w = ep["depth_m"].shape[-2:]
        rgb, xyz = resize_inputs(ep["rgb"][-1], depth_to_xyz_cam(ep["depth_m"][-1], K), *size)
        goal_cam = ep["goal_center_cam_m"]
        goal_uv = (K @ goal_cam)[:2] / goal_cam[2] if np.all(np.isfinite(goal_cam)) else None
        T_cam_world = np.linalg.inv(T_world_cam)
        future_world = fixed_stride_future(ep, cfg.stride, cfg.fm.horizon)
        rows["rgb"].append(rgb)
        rows["xyz"].append(xyz)
        rows["grounding"].append(torch.from_numpy(grounding_targets(ep["target_mask"], goal_uv,
                                                                    (size[0] // 2, size[1] // 2))))
        rows["points_uv"].append(torch.from_numpy(pixels_to_model(ep["points_uv"], (w, h), size)))
        rows["points_cam"].append(torch.from_numpy(ep["points_cam_m"].astype(np.float32)))
        rows["future_cam"].append(torch.from_numpy(
            (future_world @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]).astype(np.float32)))
        rows["text"].append(ep["meta"]["instruction"])
        rows["family"].append(ep["meta"]["family"])
        rows["target"].append(int(ep["target_body_id"]))
        rows["seg"].append(torch.from_numpy(ep["segmentation"].astype(np.int16)))
    instructions = sorted(set(rows["text"]))
    lookup = {s: j for j, s in enumerate(instructions)}
    fields = dict(
        rgb=torch.stack(rows["rgb"]), xyz=torch.stack(rows["xyz"]), grounding=torch.stack(rows["grounding"]),
        points_uv=torch.stack(rows["points_uv"]), points_cam=torch.stack(rows["points_cam"]),
        future_cam=torch.stack(rows["future_cam"]), text_index=torch.tensor([lookup[s] for s in rows["text"]]),
        instructions=instructions, families=rows["family"], target_ids=torch.tensor(rows["target"]),
        segmentation=torch.stack(rows["seg"]), manifest_hash=manifest["config_hash"],
    )
    torch.save(fields, cache)
    return TensorSet(**fields)


class TextBank:
    """Token states of a fixed list of instructions, computed once with the frozen encoder."""

    def __init__(self, instructions: list[str]):
        self.instructions = list(instructions)
        self.index = {s: i for i, s in enumerate(self.instructions)}
        tokens, masks = default_text_encoder().encode(self.instructions)
        self.tokens = torch.from_numpy(tokens)
        self.masks = torch.from_numpy(masks)

    def remap(self, data: TensorSet) -> TensorSet:
        """The same data with ``text_index`` pointing into this bank."""
        lookup = torch.tensor([self.index[s] for s in data.instructions])
        return replace(data, text_index=lookup[data.text_index])


def batch_inputs(data: TensorSet, bank: TextBank, idx: torch.Tensor, device) -> dict:
    image, xyz = make_image_input(data.rgb[idx], data.xyz[idx])
    text = data.text_index[idx]
    batch = {
        "image": image.to(device), "xyz": xyz.to(device), "tokens": bank.tokens[text].to(device),
        "mask": bank.masks[text].to(device), "grounding": data.grounding[idx].to(device),
        "points_uv": data.points_uv[idx].to(device), "points_cam": data.points_cam[idx].to(device),
        "future_cam": data.future_cam[idx].to(device),
    }
    if data.goal_cam is not None:
        batch["target_cam"] = data.target_cam[idx].to(device)
        batch["goal_cam"] = data.goal_cam[idx].to(device)
    return batch


def model_loss(model: ForecasterModel, b: dict, generator=None, grounding_weight: float = 0.5,
               pool_head: PoolPositionHead | None = None) -> torch.Tensor:
    """The training objective; with ``pool_head`` (``base-pool``) the pool objective + weighted grounding, as the
    forecasters weigh their motion loss against grounding."""
    enc = model.encoder(b["image"], b["xyz"], b["tokens"], b["mask"])
    g_loss = grounding_loss(enc.grounding_logits, b["grounding"])
    if pool_head is not None:
        return pool_head.loss(enc, b["target_cam"], b["goal_cam"]) + grounding_weight * g_loss
    if model.cfg.head == "base":
        return g_loss
    if model.cfg.head == "fm":
        target = (b["future_cam"] - b["points_cam"][:, :, None]) / MOTION_SCALE_M
        return model.fm.loss(enc, b["points_uv"], b["points_cam"], target, generator) + grounding_weight * g_loss
    values = to_anchor_mm(b["points_cam"], b["future_cam"])
    return model.ar.loss(enc, b["points_uv"], b["points_cam"], values) + grounding_weight * g_loss


def to_anchor_mm(points_cam: torch.Tensor, future_cam: torch.Tensor) -> torch.Tensor:
    """(B, P, 3) t0 points and (B, P, F, 3) future → integer mm from point 0 at t0, (B, P, F+1, 3), step 0 = t0."""
    anchor = points_cam[:, :1, None]  # (B, 1, 1, 3)
    track = torch.cat([points_cam[:, :, None], future_cam], 2)
    return torch.round((track - anchor) * 1000.0).long()


def train(model_kind: str, data_dir: str | Path, out: str | Path, steps: int, val_dir: str | Path | None = None,
          init: str | Path | None = None, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
          val_every: int = 500, device: str = "auto", progress: bool = True, stride: int = 2) -> dict:
    """Train ``model_kind`` (base | fm | ar | base-pool) and write a checkpoint to ``out``; returns the final
    metrics."""
    from tqdm import tqdm

    if model_kind not in MODEL_KINDS:
        raise TrainingError(f"unknown model {model_kind!r}; choose {', '.join(MODEL_KINDS[:-1])} or {MODEL_KINDS[-1]}")
    if steps <= 0 or batch_size <= 0:
        raise TrainingError("steps and batch size must be positive")
    if device not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was asked for but no CUDA GPU is available")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    torch.manual_seed(seed)
    pool_objective = model_kind == "base-pool"
    cfg = ForecasterConfig(head="base" if pool_objective else model_kind, stride=stride)
    model = ForecasterModel(cfg)
    if init is not None:
        base, _ = load_checkpoint(init)
        if base.cfg.encoder != cfg.encoder:
            raise TrainingError(f"{init} has another encoder configuration")
        model.encoder.load_state_dict(base.encoder.state_dict())
    elif model_kind != "base":
        logger.warning("training %s without --init: the encoder starts from scratch", model_kind)
    if model_kind != "base":
        # The CNN trunk keeps its grounding weights; the language fusion, the feature decoder and the
        # head learn from motion (what the policy experiment compares). It also halves the step time.
        # base-pool does the same, so the two stage-2 encoders differ in their objective only.
        for module in (model.encoder.stem, model.encoder.down1, model.encoder.down2):
            module.requires_grad_(False)
    pool_head = PoolPositionHead(cfg.encoder) if pool_objective else None  # dropped from the checkpoint
    model.to(dev)
    if pool_head is not None:
        pool_head.to(dev)
    extra = list(pool_head.parameters()) if pool_head is not None else []
    data = build_tensor_set(data_dir, cfg, positions=pool_objective)
    val = build_tensor_set(val_dir, cfg, positions=pool_objective) if val_dir else None
    bank = TextBank(sorted(set(data.instructions) | set(val.instructions if val else [])))
    data = bank.remap(data)
    val = bank.remap(val) if val is not None else None
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad] + extra, lr=lr,
                                  weight_decay=1e-4)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state_path = out.with_suffix(out.suffix + ".state")
    start_step, history = 0, []
    if state_path.is_file():  # resume
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        if pool_head is not None:
            pool_head.load_state_dict(state["pool_head"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, history = state["step"], state["history"]
        torch.set_rng_state(state["rng"])
        logger.info("resuming %s at step %d", out, start_step)
    generator = torch.Generator().manual_seed(seed + 1)
    amp = dev.type == "cuda"
    n = len(data)
    bar = tqdm(range(start_step, steps), initial=start_step, total=steps, desc=f"train {model_kind}",
               disable=not progress, mininterval=2.0)
    t0 = time.time()
    running = None
    for step in bar:
        for group in optimizer.param_groups:  # cosine schedule with a short warm-up
            group["lr"] = lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * step / steps))
        epoch_gen = torch.Generator().manual_seed(seed * 100_003 + step // max(1, n // batch_size))
        perm = torch.randperm(n, generator=epoch_gen)
        start = (step % max(1, n // batch_size)) * batch_size
        idx = perm[start : start + batch_size]
        model.train()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = model_loss(model, batch_inputs(data, bank, idx, dev), generator, pool_head=pool_head)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + extra, 1.0)
        optimizer.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}")
        last = step + 1 == steps
        if (step + 1) % val_every == 0 or last:
            row = {"step": step + 1, "train_loss": running, "wall_s": time.time() - t0}
            if val is not None:
                row["val_loss"] = evaluate_loss(model, val, bank, dev, seed, pool_head=pool_head)
            history.append(row)
            logger.info("step %d %s", step + 1, row)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                     "history": history, "rng": torch.get_rng_state()}
            if pool_head is not None:
                state["pool_head"] = pool_head.state_dict()
            torch.save(state, state_path)
    meta = {"history": history, "dataset_manifest_hash": data.manifest_hash, "train_dir": str(data_dir),
            "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
            "init": str(init) if init else None, "train_episodes": n}
    if pool_objective:
        meta["objective"] = "grounding + pool (base-pool; the pool's regression layer is not saved)"
    save_checkpoint(model.cpu(), out, meta)
    return history[-1] if history else {}


@torch.no_grad()
def evaluate_loss(model: ForecasterModel, data: TensorSet, bank: TextBank, device, seed: int,
                  batch_size: int = 64, pool_head: PoolPositionHead | None = None) -> float:
    model.eval()
    generator = torch.Generator().manual_seed(seed + 7)
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        total += model_loss(model, batch_inputs(data, bank, idx, device), generator,
                            pool_head=pool_head).item() * len(idx)
        count += len(idx)
    return total / max(count, 1)
