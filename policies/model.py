"""The goal-conditioned BC policy: the forecaster's vision-language encoder + a small MLP head.

Variants differ only where named (``VARIANTS``):
  A: encoder from the motion forecaster ``fm.pt``      B: from the base grounding encoder ``base.pt``
  C: as A, plus the FM forecast (P=8, F=8) as input    D: encoder from scratch (seeded random init)
``fm.pt`` and ``base.pt`` share the CNN trunk (stem, down1, down2) bit for bit; the token projection,
text projection, fusion blocks, feature decoder, grounding head and attention pool differ (the
forecaster trained them on motion with the grounding loss kept; base never trained its pool).

``PolicyConfig.finetune`` picks what trains besides the head:
  "none": the encoder is frozen; the head reads a fixed encoding of each frame (cheap on a CPU; the
          variants compare what their encoders already know).
  "post_trunk": the encoder's layers after its CNN trunk (``POST_TRUNK``: token and text projections,
          fusion blocks, feature decoder, grounding head, attention pool) train with the head; the
          trunk (``TRUNK``), identical in fm.pt and base.pt, stays frozen, so its outputs can be
          computed once per frame (:func:`encoder_trunk`) and training runs :meth:`VisionLanguageEncoder.post_trunk`.
          This is where A and B differ, and what MolmoMotion's "steps to reach" measures: how fast a
          pretrained backbone adapts.
Checkpoints store the config and every weight (the fine-tuned encoder's included) and rebuild the
network from them, never from a file name.

The pre-registered protocol (``policies/protocol.yaml``, issue 21) replaces fm.pt and base.pt by two
compute-matched encoders, ``fm_v2`` and ``base_matched`` (``PROTOCOL_ENCODERS``), which
``molmomotion experiment pretrain`` writes into a folder as ``<name>.pt``: ``PolicyConfig.encoders_dir`` names
that folder, and ``PolicyConfig.for_variant(..., encoders_dir=DIR)`` gives each variant the protocol encoder of
its shipped one's role (A, C: fm_v2; B: base_matched; D: scratch).
"""

from __future__ import annotations

import datetime
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from molmomotion_ros.forecasting.checkpoint import code_revision, load_checkpoint
from molmomotion_ros.forecasting.models import (
    POST_TRUNK_LAYERS,
    EncoderConfig,
    Encoding,
    TrunkOutput,
    VisionLanguageEncoder,
    make_image_input,
    sample_points,
)
from molmomotion_ros.forecasting.predictor import shipped_checkpoint
from molmomotion_ros.robot import TABLE_TOP_Z_M

from .files import file_sha256
from .observation import (
    CHUNK_STEPS,
    FOOTPRINT_MIN_HEIGHT_M,
    FOOTPRINT_RADIUS_M,
    FOOTPRINT_TOP_BAND_M,
    FORECAST_POINTS,
    FORECAST_STEPS,
    POSITION_SCALE_M,
    PROPRIO_DIM,
    WORKSPACE_CENTRE_M,
    PolicyError,
)

FORMAT = "molmomotion_policies.policy"
SCHEMA_VERSION = 2  # 2: PolicyConfig.finetune (schema-1 checkpoints load as finetune="none")
READABLE_SCHEMAS = (1, 2)
VARIANTS: dict[str, dict] = {
    "A": {"encoder_init": "fm", "forecast_conditioning": False},
    "B": {"encoder_init": "base", "forecast_conditioning": False},
    "C": {"encoder_init": "fm", "forecast_conditioning": True},
    "D": {"encoder_init": "scratch", "forecast_conditioning": False},
}
ENCODER_SOURCES = ("fm", "base", "scratch")
# The protocol's encoders by the shipped encoder whose role each takes; read from PolicyConfig.encoders_dir.
PROTOCOL_ENCODERS = {"fm": "fm_v2", "base": "base_matched"}
FINETUNE_MODES = ("none", "post_trunk")
TRUNK = ("stem", "down1", "down2")  # the CNN trunk: bit-identical in fm.pt and base.pt
POST_TRUNK = POST_TRUNK_LAYERS


@dataclass
class PolicyConfig:
    variant: str = "A"
    encoder_init: str = "fm"  # fm | base | scratch, or a protocol encoder: fm_v2 | base_matched (from encoders_dir)
    forecast_conditioning: bool = False
    encoder_seed: int = 0  # initialises the scratch encoder
    hidden: int = 256
    layers: int = 3
    feature_dropout: float = 0.2  # on the encoder features (not the geometry): 200 demos are few
    fine_scale_m: float = 0.02  # gripper-relative target/goal also enter at this scale, clipped to ±3
    chunk_steps: int = CHUNK_STEPS
    finetune: str = "none"  # none | post_trunk: the encoder's layers after the CNN trunk train too
    geometry_skip: bool = False  # a linear path from the geometric inputs straight to the chunk (see PolicyHead)
    footprint: bool = False  # read the target's footprint orientation at t0 (:func:`target_footprint`)
    encoders_dir: str | None = None  # folder of the protocol encoders (<name>.pt): where, not what (not hashed)

    def __post_init__(self) -> None:
        if self.finetune not in FINETUNE_MODES:
            raise PolicyError(f"unknown finetune mode {self.finetune!r}; choose from {', '.join(FINETUNE_MODES)}")

    @classmethod
    def for_variant(cls, variant: str, encoder_seed: int = 0, encoders_dir: str | None = None,
                    **overrides) -> "PolicyConfig":
        """The variant's config; with ``encoders_dir`` its shipped encoder (fm, base) is replaced by the protocol
        encoder of that role from the folder (``PROTOCOL_ENCODERS``)."""
        if variant not in VARIANTS:
            raise PolicyError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        spec = dict(VARIANTS[variant])
        if encoders_dir is not None:
            spec["encoder_init"] = PROTOCOL_ENCODERS.get(spec["encoder_init"], spec["encoder_init"])
            spec["encoders_dir"] = str(encoders_dir)
        return cls(variant=variant, encoder_seed=encoder_seed, **spec, **overrides)


@dataclass
class ActionChunk:
    """Predicted chunk: offsets of the next C samples from the current grasp-target pose (world frame)."""

    pos_m: torch.Tensor  # (B, C, 3)
    yaw_rad: torch.Tensor  # (B, C)
    gripper_logits: torch.Tensor  # (B, C) > 0 = closed


def forecaster_checkpoint(cfg: "PolicyConfig") -> str | None:
    """The FM forecaster whose forecasts a forecast-conditioned policy reads: the one whose encoder it starts from
    (the shipped fm.pt: None, the pipeline's default; the protocol's fm_v2: its file), in its demonstrations and
    when it acts alike."""
    if cfg.encoder_init == "fm":
        return None
    if cfg.encoder_init == PROTOCOL_ENCODERS["fm"]:
        return str(encoder_checkpoint(cfg.encoder_init, cfg.encoders_dir))
    raise PolicyError(f"a forecast-conditioned policy reads the forecasts of the FM model its encoder comes from; "
                      f"encoder {cfg.encoder_init!r} is not one")


def encoder_checkpoint(source: str, encoders_dir: str | Path | None = None) -> Path:
    """The checkpoint an encoder source reads: the shipped fm.pt or base.pt, or a protocol encoder's
    ``<encoders_dir>/<name>.pt`` (made by ``molmomotion experiment pretrain``)."""
    if source in PROTOCOL_ENCODERS.values():
        if encoders_dir is None:
            raise PolicyError(f"the protocol encoder {source!r} is read from a folder: give encoders_dir (made by "
                              "`molmomotion experiment pretrain`)")
        path = Path(encoders_dir) / f"{source}.pt"
        if not path.is_file():
            raise PolicyError(f"no protocol encoder {source!r} at {path} (make it with `molmomotion experiment "
                              "pretrain --out " f"{encoders_dir}`)")
        return path
    if source == "scratch":
        raise PolicyError("the scratch encoder is a seeded random init: it has no checkpoint")
    if source not in ENCODER_SOURCES:
        known = (*ENCODER_SOURCES, *PROTOCOL_ENCODERS.values())
        raise PolicyError(f"unknown encoder source {source!r}; choose from {', '.join(known)}")
    return shipped_checkpoint(source)


def encoder_sha256(source: str, encoders_dir: str | Path | None = None) -> str:
    """sha256 of the bytes of the checkpoint ``source`` reads (:func:`encoder_checkpoint`)."""
    return file_sha256(encoder_checkpoint(source, encoders_dir))


def build_encoder(source: str, seed: int = 0, encoders_dir: str | Path | None = None) -> VisionLanguageEncoder:
    """The encoder with weights from the shipped fm.pt or base.pt, a protocol encoder in ``encoders_dir`` (fm_v2,
    base_matched), or a seeded random init (scratch)."""
    if source == "scratch":
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            return VisionLanguageEncoder(EncoderConfig()).eval()
        finally:
            torch.random.set_rng_state(generator_state)
    path = encoder_checkpoint(source, encoders_dir)
    model, _ = load_checkpoint(path)
    if model.cfg.encoder != EncoderConfig():
        raise PolicyError(f"{path} holds an encoder of another configuration than the policy's")
    return model.encoder.eval()


@torch.no_grad()
def encoder_trunk(encoder: VisionLanguageEncoder, image: torch.Tensor, xyz: torch.Tensor) -> TrunkOutput:
    """The frozen trunk's output (no gradients): computed once per frame and cached by training."""
    return encoder.trunk(image, xyz)


def target_footprint(xyz_cam_m: torch.Tensor, T_world_cam: torch.Tensor, target_world_m: torch.Tensor) -> torch.Tensor:
    """Orientation of the grounded target's footprint from the depth points around it → (B, FOOTPRINT_DIM).

    The encoder sees a 4 cm cube as ~4x4 of its 80x60 pixels and was never trained on orientation, so a policy
    reading it alone grasps at a random wrist angle. These are the horizontal second and fourth circular
    moments of the points within FOOTPRINT_RADIUS_M of the target, above the table, in the world frame:
    m2 = E[r² e^{2iφ}] / E[r²] (phase: twice an elongated object's long axis; a block) and m4 = E[r⁴ e^{4iφ}] /
    E[r⁴] (phase: four times a square's diagonal; a cube, mod 90°), plus the point count / 50.
    ``xyz_cam_m`` (B, 3, h, w) camera frame, NaN or exactly 0 = no return."""
    b = xyz_cam_m.shape[0]
    R, t = T_world_cam[:, :3, :3].float(), T_world_cam[:, :3, 3].float()
    xyz = xyz_cam_m.float().flatten(2)  # (B, 3, N)
    valid = torch.isfinite(xyz).all(1) & (xyz.abs().sum(1) > 0)
    world = torch.einsum("bij,bjn->bni", R, torch.nan_to_num(xyz)) + t[:, None]  # (B, N, 3)
    offset = world[..., :2] - target_world_m[:, None, :2].float()
    near = valid & (offset.norm(dim=-1) < FOOTPRINT_RADIUS_M) & (world[..., 2] > TABLE_TOP_Z_M + FOOTPRINT_MIN_HEIGHT_M)
    # The top face alone: an oblique camera also sees side faces, which smear the outline.
    top = torch.where(near, world[..., 2], torch.full_like(world[..., 2], -1e9)).amax(1, keepdim=True)
    weight = (near & (world[..., 2] > top - FOOTPRINT_TOP_BAND_M)).float()  # (B, N)
    count = weight.sum(1)
    centroid = (offset * weight[..., None]).sum(1) / count.clamp_min(1.0)[:, None]
    q = (offset - centroid[:, None]) * weight[..., None]
    c2, s2 = q[..., 0] ** 2 - q[..., 1] ** 2, 2 * q[..., 0] * q[..., 1]  # r² cos 2φ, r² sin 2φ
    r2 = (q ** 2).sum(-1)
    c4, s4 = c2 ** 2 - s2 ** 2, 2 * c2 * s2  # r⁴ cos 4φ, r⁴ sin 4φ
    m2 = torch.stack([c2.sum(1), s2.sum(1)], 1) / r2.sum(1).clamp_min(1e-9)[:, None]
    m4 = torch.stack([c4.sum(1), s4.sum(1)], 1) / (r2 ** 2).sum(1).clamp_min(1e-12)[:, None]
    enough = (count >= 3).float()[:, None]
    return torch.cat([(count / 50.0)[:, None], m2 * enough, m4 * enough], 1).reshape(b, FOOTPRINT_DIM)


def policy_encoding(enc: Encoding, T_world_cam: torch.Tensor, ee_uv_model: torch.Tensor,
                    xyz_cam_m: torch.Tensor) -> torch.Tensor:
    """The head's view of an :class:`Encoding` → (B, ENCODING_DIM): global, text, feature at the gripper's pixel,
    features pooled under each heat-map (FEATURE_DIM), the target's footprint (FOOTPRINT_DIM), expected target
    and goal in the world frame (last 6)."""
    R, t = T_world_cam[:, :3, :3].float(), T_world_cam[:, :3, 3].float()
    target_world = torch.einsum("bij,bj->bi", R, enc.target_xyz) + t
    goal_world = torch.einsum("bij,bj->bi", R, enc.goal_xyz) + t
    at_gripper = sample_points(enc.features, ee_uv_model[:, None].float())[:, 0]  # (B, C)
    heat = torch.softmax(enc.grounding_logits.flatten(2), -1)  # (B, 2, h*w)
    heat_pooled = torch.einsum("bkn,bcn->bkc", heat, enc.features.flatten(2)).flatten(1)  # (B, 2C)
    footprint = target_footprint(xyz_cam_m, T_world_cam, target_world.detach())  # a measurement, not learnt
    return torch.cat([enc.global_feature, enc.text_feature, at_gripper, heat_pooled, footprint, target_world,
                      goal_world], 1)


def post_trunk_parameters(encoder: VisionLanguageEncoder) -> list[nn.Parameter]:
    return [p for name, p in encoder.named_parameters() if name.split(".")[0] in POST_TRUNK]


FEATURE_DIM = 96 + 96 + 64 + 2 * 64  # global, text, feature at the gripper, heat-pooled ×2
FOOTPRINT_DIM = 5  # point count, m2 (2), m4 (2): see target_footprint
ENCODING_DIM = FEATURE_DIM + FOOTPRINT_DIM + 3 + 3  # + target, goal
ENCODING_LAYOUT = 2  # 2: the footprint before target and goal (caches of layout 1 lack it)


def _rotate(xy: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """(B, 2) read as complex numbers, times e^{i angle}."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([xy[:, 0] * c - xy[:, 1] * s, xy[:, 0] * s + xy[:, 1] * c], 1)


class PolicyHead(nn.Module):
    """Encoding + proprioception (+ forecast) → action chunk. Positions enter relative to the gripper."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.feature_norm = nn.LayerNorm(FEATURE_DIM)  # encoders differ in feature scale; same for all
        self.feature_dropout = nn.Dropout(cfg.feature_dropout)
        forecast_dim = FORECAST_POINTS * (FORECAST_STEPS + 1) * 3 + 1 if cfg.forecast_conditioning else 0
        footprint_dim = FOOTPRINT_DIM if cfg.footprint else 0
        in_dim = FEATURE_DIM + 24 + PROPRIO_DIM + footprint_dim + forecast_dim
        layers: list[nn.Module] = []
        for i in range(cfg.layers):
            layers += [nn.Linear(in_dim if i == 0 else cfg.hidden, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU()]
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(cfg.hidden, cfg.chunk_steps * 5)
        # Offsets toward a grounded point are linear in the inputs; the skip lets the head copy them exactly
        # instead of through normalised nonlinear layers. Zero-initialised: training starts from the MLP alone.
        self.skip = nn.Linear(in_dim - FEATURE_DIM, cfg.chunk_steps * 5) if cfg.geometry_skip else None
        if self.skip is not None:
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)

    def forward(self, encoding, proprio, encoding_t0, forecast_world_m=None, forecast_points_t0_world_m=None,
                forecast_valid=None) -> ActionChunk:
        """encoding (B, ENCODING_DIM) from :meth:`GoalConditionedPolicy.encode` of the current frame and
        encoding_t0 of the episode's first frame (its grounded target and goal: the arm hides the target
        later on); proprio (B, PROPRIO_DIM); forecast (B, P, F, 3) and its t0 points (B, P, 3), world frame,
        valid (B,) bool."""
        ee_scaled = proprio[:, :3]  # (ee − centre) / scale
        centre = torch.as_tensor(WORKSPACE_CENTRE_M, dtype=encoding.dtype, device=encoding.device)
        grounded_world = torch.cat([encoding[:, -6:], encoding_t0[:, -6:]], 1).view(-1, 4, 3)  # now, t0
        grounded = (grounded_world - centre) / POSITION_SCALE_M - ee_scaled[:, None]  # (B, 4, 3)
        fine = (grounded * POSITION_SCALE_M / self.cfg.fine_scale_m).clamp(-3, 3)  # precise near the object
        features = self.feature_dropout(self.feature_norm(encoding[:, :FEATURE_DIM]))
        parts = [features, grounded.flatten(1), fine.flatten(1), proprio]
        if self.cfg.footprint:  # at t0 (unoccluded), turned into the gripper's frame: how far to turn the wrist
            footprint = encoding_t0[:, FEATURE_DIM:FEATURE_DIM + FOOTPRINT_DIM]
            yaw = torch.atan2(proprio[:, 3], proprio[:, 4])  # proprio holds sin, cos of the gripper yaw
            m2 = _rotate(footprint[:, 1:3], -2 * yaw)
            m4 = _rotate(footprint[:, 3:5], -4 * yaw)
            parts += [footprint[:, :1], m2, m4]
        if self.cfg.forecast_conditioning:
            if forecast_world_m is None:
                raise PolicyError("this policy is forecast-conditioned: give it the forecast")
            points = torch.cat([forecast_points_t0_world_m[:, :, None], forecast_world_m], 2)  # (B, P, F+1, 3)
            valid = forecast_valid[:, None, None, None].float()
            rel = ((points - centre) / POSITION_SCALE_M - ee_scaled[:, None, None]) * valid  # (B, P, F+1, 3)
            parts += [rel.flatten(1), forecast_valid[:, None].float()]
        out = self.out(self.mlp(torch.cat(parts, 1)))
        if self.skip is not None:
            out = out + self.skip(torch.cat(parts[1:], 1))
        out = out.view(-1, self.cfg.chunk_steps, 5)  # (B, C, 5)
        return ActionChunk(out[..., :3] * POSITION_SCALE_M, out[..., 3], out[..., 4])


class GoalConditionedPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig, encoder: VisionLanguageEncoder | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = (encoder if encoder is not None
                        else build_encoder(cfg.encoder_init, cfg.encoder_seed, cfg.encoders_dir))
        self.encoder.requires_grad_(False)
        if cfg.finetune == "post_trunk":
            for p in post_trunk_parameters(self.encoder):
                p.requires_grad_(True)
        self.head = PolicyHead(cfg)

    def train(self, mode: bool = True) -> "GoalConditionedPolicy":
        super().train(mode)
        # The encoder has no dropout or running statistics; eval() keeps it that way whatever it trains.
        self.encoder.eval()
        return self

    @torch.no_grad()
    def encode(self, rgb, xyz_cam_m, text_tokens, text_mask, T_world_cam, ee_uv_model) -> torch.Tensor:
        """rgb (B, 3, 60, 80) uint8, xyz (B, 3, 60, 80) camera frame (NaN = none), text (B, L, 384) and
        mask (B, L), T_world_cam (B, 4, 4), grasp-target pixel (B, 2) in model pixels → (B, ENCODING_DIM)."""
        image, xyz = make_image_input(rgb, xyz_cam_m.float())
        return policy_encoding(self.encoder(image, xyz, text_tokens, text_mask), T_world_cam, ee_uv_model, xyz)

    def encode_from_trunk(self, trunk: TrunkOutput, text_tokens, text_mask, T_world_cam, ee_uv_model) -> torch.Tensor:
        """:meth:`encode` from cached trunk outputs, differentiable in the post-trunk layers (training)."""
        return policy_encoding(self.encoder.post_trunk(trunk, text_tokens, text_mask), T_world_cam,
                               ee_uv_model, trunk.xyz_cam)

    def forward(self, encoding, proprio, encoding_t0, **forecast) -> ActionChunk:
        return self.head(encoding, proprio, encoding_t0, **forecast)

    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "config": asdict(self.cfg),
                   "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                   "meta": {"code_revision": code_revision(),
                            "created": datetime.datetime.now(datetime.UTC).isoformat(), **(meta or {})}}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)
        return path

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> tuple["GoalConditionedPolicy", dict]:
        path = Path(path)
        if not path.is_file():
            raise PolicyError(f"no policy checkpoint at {path}")
        try:
            payload = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as err:  # truncated or not a torch file
            raise PolicyError(f"{path} is not a readable policy checkpoint: {err}") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise PolicyError(f"{path} is not a policy checkpoint")
        if payload.get("schema_version") not in READABLE_SCHEMAS:
            raise PolicyError(f"{path} has schema {payload.get('schema_version')}, this code reads "
                              f"{', '.join(map(str, READABLE_SCHEMAS))}")
        cfg = PolicyConfig(**payload["config"])
        model = cls(cfg, encoder=VisionLanguageEncoder(EncoderConfig()))
        try:
            model.load_state_dict(payload["state_dict"], strict=True)
        except RuntimeError as err:
            raise PolicyError(f"{path}: weights do not fit the declared policy ({str(err).splitlines()[0]})") from None
        return model.eval(), payload.get("meta", {})


def chunk_loss(pred: ActionChunk, pos_m, yaw_rad, gripper_closed) -> tuple[torch.Tensor, dict]:
    """MSE on positions (in units of POSITION_SCALE_M) and yaw, BCE on the gripper; and their parts."""
    pos = F.mse_loss(pred.pos_m / POSITION_SCALE_M, pos_m / POSITION_SCALE_M)
    yaw = F.mse_loss(pred.yaw_rad, yaw_rad)
    grip = F.binary_cross_entropy_with_logits(pred.gripper_logits, gripper_closed.float())
    return pos + yaw + grip, {"pos": pos.item(), "yaw": yaw.item(), "gripper": grip.item()}
