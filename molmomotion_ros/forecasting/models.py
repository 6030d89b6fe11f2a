"""The networks: a small RGB-D + language encoder, and the AR and flow-matching trajectory heads.

Everything the predictor, the trainer and the policies need is in this one file (nanoGPT style):
configs are dataclasses, modules are built from them, checkpoints store the config so loading
rebuilds the exact network.

Shapes: B batch, P query points, F future steps, L text tokens, (h, w) model input size.
Geometry inputs are in the camera frame at t0, metres; trajectories are displacements of each
point from its t0 position, divided by ``MotionScale`` so they are O(1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .text import TEXT_DIM

MOTION_SCALE_M = 0.1  # trajectories are learned in units of 10 cm


# --- configs ---------------------------------------------------------------------------------
@dataclass
class EncoderConfig:
    input_width: int = 80  # the 160x120 camera image is subsampled by 2
    input_height: int = 60
    in_channels: int = 7  # rgb (3) + camera-frame xyz (3) + depth validity (1)
    widths: tuple[int, int, int] = (24, 48, 96)  # at full, 1/2 and 1/4 input resolution
    dim: int = 96  # fused token width
    heads: int = 4
    fusion_layers: int = 2
    feature_dim: int = 64  # of the half-resolution feature map the heads sample
    text_dim: int = TEXT_DIM


@dataclass
class FMConfig:
    dim: int = 128  # keeps 10 Euler steps at K=8 inside the 33 ms camera-rate budget (256 took 43 ms)
    layers: int = 3
    heads: int = 4
    horizon: int = 32


@dataclass
class ARConfig:
    hidden: int = 256
    horizon: int = 32
    max_step_mm: int = 100  # per-step increments are categorical over [-max, +max] millimetres


@dataclass
class ForecasterConfig:
    """A whole model: the encoder and at most one trajectory head (``head`` = base | fm | ar)."""

    head: str = "base"
    stride: int = 2  # trajectory steps are every ``stride`` frames of the 15 fps track
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    fm: FMConfig = field(default_factory=FMConfig)
    ar: ARConfig = field(default_factory=ARConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ForecasterConfig":
        enc = dict(d.get("encoder", {}))
        if "widths" in enc:
            enc["widths"] = tuple(enc["widths"])
        return cls(head=d["head"], stride=d.get("stride", 2), encoder=EncoderConfig(**enc),
                   fm=FMConfig(**d.get("fm", {})), ar=ARConfig(**d.get("ar", {})))


# --- encoder ---------------------------------------------------------------------------------
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


class FusionBlock(nn.Module):
    """Image tokens attend to the instruction's tokens, then to each other."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_cross, self.norm_self, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, text, text_pad_mask):
        h = self.norm_cross(x)
        x = x + self.cross(h, text, text, key_padding_mask=text_pad_mask, need_weights=False)[0]
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


@dataclass
class Encoding:
    """What the encoder hands to the heads (and to the policies)."""

    features: torch.Tensor  # (B, C, h/2, w/2) fused feature map
    grounding_logits: torch.Tensor  # (B, 2, h/2, w/2): channel 0 = target object, 1 = goal location
    target_xyz: torch.Tensor  # (B, 3) expected target position (camera frame, m) under the heat-map
    goal_xyz: torch.Tensor  # (B, 3) expected goal position
    global_feature: torch.Tensor  # (B, C)
    text_feature: torch.Tensor  # (B, C)


@dataclass
class TrunkOutput:
    """What the encoder's CNN trunk hands the layers after it, per frame."""

    s1: torch.Tensor  # (B, w1, h/2, w/2) = (B, 48, 30, 40)
    s2: torch.Tensor  # (B, w2, h/4, w/4) = (B, 96, 15, 20)
    xyz_half: torch.Tensor  # (B, 3, h/2, w/2) camera-frame xyz at half resolution, divided by depth validity
    xyz_cam: torch.Tensor  # (B, 3, h, w) camera-frame xyz at full resolution, 0 or NaN = no return


class VisionLanguageEncoder(nn.Module):
    """RGB-D CNN from scratch + frozen MiniLM tokens, fused by cross-attention; grounding heads."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        w0, w1, w2 = cfg.widths
        self.stem = _conv(cfg.in_channels, w0)
        self.down1 = nn.Sequential(_conv(w0, w1, 2), _conv(w1, w1))  # 1/2
        self.down2 = nn.Sequential(_conv(w1, w2, 2), _conv(w2, w2))  # 1/4
        self.to_tokens = nn.Conv2d(w2 + 2, cfg.dim, 1)  # + normalised (u, v) coordinates
        self.text_proj = nn.Linear(cfg.text_dim, cfg.dim)
        self.fusion = nn.ModuleList(FusionBlock(cfg.dim, cfg.heads) for _ in range(cfg.fusion_layers))
        self.up = nn.Sequential(
            nn.Conv2d(cfg.dim + w1, cfg.feature_dim, 1), nn.SiLU(), _conv(cfg.feature_dim, cfg.feature_dim)
        )
        self.grounding = nn.Conv2d(cfg.feature_dim, 2, 1)
        self.pool_query = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pool = nn.MultiheadAttention(cfg.dim, cfg.heads, batch_first=True)

    def forward(self, image, xyz, text_tokens, text_mask) -> Encoding:
        """image (B, 7, h, w) from :func:`make_image_input`; xyz (B, 3, h, w) camera frame (m, 0 = none);
        text_tokens (B, L, 384); text_mask (B, L) True = real token."""
        return self.post_trunk(self.trunk(image, xyz), text_tokens, text_mask)

    def trunk(self, image, xyz) -> TrunkOutput:
        """The CNN trunk (stem, down1, down2), which sees no text: a policy that freezes it computes it once
        per frame and trains :meth:`post_trunk` (the layers in ``POST_TRUNK_LAYERS``)."""
        s1 = self.down1(self.stem(image))  # (B, w1, h/2, w/2)
        s2 = self.down2(s1)  # (B, w2, h/4, w/4)
        xyz_half = F.avg_pool2d(xyz, 2) / F.avg_pool2d(image[:, 6:7], 2).clamp_min(1e-3)  # per valid pixel
        return TrunkOutput(s1, s2, xyz_half, xyz)

    def post_trunk(self, trunk: TrunkOutput, text_tokens, text_mask) -> Encoding:
        """Text fusion, upsampling, grounding and pooling on the trunk's output."""
        s1, s2 = trunk.s1, trunk.s2
        b, _, h4, w4 = s2.shape
        grid = _coordinate_grid(h4, w4, s2.device).expand(b, -1, -1, -1)
        tokens = self.to_tokens(torch.cat([s2, grid], 1)).flatten(2).transpose(1, 2)  # (B, h4*w4, C)
        text = self.text_proj(text_tokens)
        pad = ~text_mask
        for block in self.fusion:
            tokens = block(tokens, text, pad)
        fused = tokens.transpose(1, 2).reshape(b, -1, h4, w4)
        up = F.interpolate(fused, size=s1.shape[-2:], mode="bilinear", align_corners=False)
        features = self.up(torch.cat([up, s1], 1))  # (B, C, h/2, w/2)
        logits = self.grounding(features)  # (B, 2, h/2, w/2)
        weights = torch.softmax(logits.flatten(2), -1).view_as(logits)  # (B, 2, h/2, w/2)
        expected = torch.einsum("bkhw,bchw->bkc", weights, trunk.xyz_half)
        text_weights = text_mask.float().unsqueeze(-1)
        text_feature = (text * text_weights).sum(1) / text_weights.sum(1).clamp_min(1.0)
        pooled = self.pool(self.pool_query.expand(b, -1, -1), tokens, tokens, need_weights=False)[0][:, 0]
        return Encoding(features, logits, expected[:, 0], expected[:, 1], pooled, text_feature)


# The encoder's layers after the trunk, by attribute name: what a policy that freezes the trunk may train.
POST_TRUNK_LAYERS = ("to_tokens", "text_proj", "fusion", "up", "grounding", "pool_query", "pool")


def _coordinate_grid(h: int, w: int, device) -> torch.Tensor:
    v, u = torch.meshgrid(torch.linspace(-1, 1, h, device=device), torch.linspace(-1, 1, w, device=device),
                          indexing="ij")
    return torch.stack([u, v])[None]  # (1, 2, h, w)


def sample_points(features: torch.Tensor, points_uv_model: torch.Tensor) -> torch.Tensor:
    """Bilinear features at model-input pixel coordinates (B, P, 2) → (B, P, C).

    Pixel centres are at integer coordinates of the model input; the feature map is half that size.
    """
    h, w = features.shape[-2:]
    uv_feat = (points_uv_model + 0.5) / 2.0 - 0.5  # model-input pixel → feature-map pixel
    grid = torch.stack([uv_feat[..., 0] / (w - 1) * 2 - 1, uv_feat[..., 1] / (h - 1) * 2 - 1], -1)
    sampled = F.grid_sample(features, grid[:, :, None], mode="bilinear", align_corners=True)  # (B, C, P, 1)
    return sampled[..., 0].transpose(1, 2)


# --- shared conditioning for the heads ----------------------------------------------------------
class PointConditioning(nn.Module):
    """Per-point tokens (B, P, D) and a global vector (B, D) from the encoding and the query points."""

    def __init__(self, enc: EncoderConfig, dim: int):
        super().__init__()
        self.point = nn.Linear(enc.feature_dim + 3 + 3 + 3, dim)  # feature, xyz, xyz − target, goal − xyz
        self.glob = nn.Linear(2 * enc.dim + enc.feature_dim + 6, dim)

    def forward(self, enc: Encoding, points_uv_model, points_cam_m):
        feats = sample_points(enc.features, points_uv_model)  # (B, P, C)
        goal = enc.goal_xyz[:, None]
        target = enc.target_xyz[:, None]
        tokens = self.point(torch.cat([
            feats, points_cam_m, (points_cam_m - target) / MOTION_SCALE_M, (goal - points_cam_m) / MOTION_SCALE_M,
        ], -1))
        glob = self.glob(torch.cat([
            enc.global_feature, enc.text_feature, feats.mean(1), enc.target_xyz, enc.goal_xyz,
        ], -1))
        return tokens, glob


# --- flow-matching head -------------------------------------------------------------------------
def _time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    angles = t[:, None] * freqs[None] * 1000.0
    return torch.cat([angles.sin(), angles.cos()], -1)


class FlowMatchingHead(nn.Module):
    """Rectified flow over the (P, F, 3) displacement field; one token per query point."""

    def __init__(self, cfg: FMConfig, enc: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.cond = PointConditioning(enc, cfg.dim)
        self.traj_in = nn.Linear(cfg.horizon * 3, cfg.dim)
        self.time = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, cfg.horizon * 3))

    def velocity(self, x_t, t, point_tokens, glob):
        """x_t (B, P, F, 3) scaled displacements at flow time t (B,) → velocity (B, P, F, 3)."""
        b, p, f, _ = x_t.shape
        h = self.traj_in(x_t.reshape(b, p, f * 3)) + point_tokens
        h = h + (self.time(_time_embedding(t, self.cfg.dim)) + glob)[:, None]
        return self.out(self.blocks(h)).view(b, p, f, 3)

    def loss(self, enc: Encoding, points_uv_model, points_cam_m, target_scaled, generator=None):
        tokens, glob = self.cond(enc, points_uv_model, points_cam_m)
        noise = torch.randn(target_scaled.shape, generator=generator, device=target_scaled.device)
        t = torch.rand(target_scaled.shape[0], generator=generator, device=target_scaled.device)
        x_t = (1 - t)[:, None, None, None] * noise + t[:, None, None, None] * target_scaled
        return F.mse_loss(self.velocity(x_t, t, tokens, glob), target_scaled - noise)

    @torch.no_grad()
    def sample(self, enc: Encoding, points_uv_model, points_cam_m, num_samples: int, steps: int = 10,
               generator=None) -> torch.Tensor:
        """K samples per batch item by Euler integration: (B, K, P, F, 3) scaled displacements."""
        tokens, glob = self.cond(enc, points_uv_model, points_cam_m)
        b, p, _ = tokens.shape
        tokens = tokens.repeat_interleave(num_samples, 0)
        glob = glob.repeat_interleave(num_samples, 0)
        x = torch.randn((b * num_samples, p, self.cfg.horizon, 3), generator=generator, device=tokens.device)
        dt = 1.0 / steps
        for i in range(steps):
            t = torch.full((x.shape[0],), i * dt, device=x.device)
            x = x + dt * self.velocity(x, t, tokens, glob)
        return x.view(b, num_samples, p, self.cfg.horizon, 3)


# --- autoregressive head ------------------------------------------------------------------------
class AutoregressiveHead(nn.Module):
    """Writes the future step by step as integer millimetres relative to point 0 at t0.

    At step f it reads the values written so far (P x 3 integers, mm from the anchor) and emits,
    for each of the P x 3 coordinates, the integer-mm increment to step f as a centimetre digit and
    then a millimetre digit conditioned on it (``d + max = 10 * cm + mm``; 21 + 10 logits instead of
    201). Values therefore stay integer millimetres, MolmoMotion-AR's convention.
    """

    def __init__(self, cfg: ARConfig, enc: EncoderConfig, points: int = 8):
        super().__init__()
        self.cfg = cfg
        self.points = points
        self.coarse_bins = 2 * cfg.max_step_mm // 10 + 1
        self.cond = PointConditioning(enc, cfg.hidden)
        self.cond_flat = nn.Linear(points * cfg.hidden + cfg.hidden, cfg.hidden)
        # Per step: values so far, each point's offset to the grounded goal, the step index, the condition.
        self.step_in = nn.Linear(2 * points * 3 + cfg.horizon + cfg.hidden, cfg.hidden)
        self.gru = nn.GRUCell(cfg.hidden, cfg.hidden)
        self.coarse_out = nn.Linear(cfg.hidden, points * 3 * self.coarse_bins)
        self.fine_state = nn.Linear(cfg.hidden, points * 3 * 32)
        self.coarse_embed = nn.Embedding(self.coarse_bins, 32)
        self.fine_out = nn.Sequential(nn.SiLU(), nn.Linear(32, 10))

    def _context(self, enc, points_uv_model, points_cam_m):
        """Initial state and what every step sees again: condition (B, H), anchor (B, 1, 3), goal (B, 1, 3)."""
        tokens, glob = self.cond(enc, points_uv_model, points_cam_m)
        condition = torch.tanh(self.cond_flat(torch.cat([tokens.flatten(1), glob], -1)))
        return condition, (condition, points_cam_m[:, :1], enc.goal_xyz[:, None])

    def _step(self, state, prev_mm, step: int, context):
        """→ new state and centimetre-digit logits (B, P, 3, coarse_bins)."""
        condition, anchor, goal = context
        b = prev_mm.shape[0]
        one_hot = F.one_hot(torch.full((b,), step, device=prev_mm.device), self.cfg.horizon).float()
        to_goal = (goal - (anchor + prev_mm / 1000.0)) / MOTION_SCALE_M  # (B, P, 3)
        inputs = torch.cat([prev_mm.flatten(1) / 100.0, to_goal.flatten(1), one_hot, condition], -1)
        state = self.gru(self.step_in(inputs), state)
        return state, self.coarse_out(state).view(b, self.points, 3, self.coarse_bins)

    def _fine_logits(self, state, coarse_digit):
        """Millimetre-digit logits (B, P, 3, 10) given the chosen centimetre digits (B, P, 3)."""
        hidden = self.fine_state(state).view(state.shape[0], self.points, 3, 32)
        while hidden.dim() < coarse_digit.dim() + 1:  # coarse_digit may carry extra candidate dims
            hidden = hidden.unsqueeze(-2)
        return self.fine_out(hidden + self.coarse_embed(coarse_digit))

    def loss(self, enc, points_uv_model, points_cam_m, values_mm):
        """values_mm (B, P, F+1, 3) integer mm from the anchor, step 0 = t0 (teacher forcing)."""
        state, context = self._context(enc, points_uv_model, points_cam_m)
        total = 0.0
        m = self.cfg.max_step_mm
        for f in range(self.cfg.horizon):
            state, coarse = self._step(state, values_mm[:, :, f].float(), f, context)
            code = (values_mm[:, :, f + 1] - values_mm[:, :, f]).clamp(-m, m) + m  # (B, P, 3) in [0, 2m]
            fine = self._fine_logits(state, code // 10)  # teacher-forced centimetre digit
            total = total + F.cross_entropy(coarse.reshape(-1, self.coarse_bins), (code // 10).reshape(-1))
            total = total + F.cross_entropy(fine.reshape(-1, 10), (code % 10).reshape(-1))
        return total / self.cfg.horizon

    @torch.no_grad()
    def decode(self, enc, points_uv_model, points_cam_m, start_mm, num_samples: int = 1, temperature: float = 0.0,
               generator=None):
        """Expected-increment (temperature 0) or sampled decoding → values (B, K, P, F, 3) int mm, log-prob (B, K)."""
        state, context = self._context(enc, points_uv_model, points_cam_m)
        state = state.repeat_interleave(num_samples, 0)
        context = tuple(c.repeat_interleave(num_samples, 0) for c in context)
        prev = start_mm.repeat_interleave(num_samples, 0)  # (B*K, P, 3)
        logp = torch.zeros(prev.shape[0], device=prev.device)
        out = []
        for f in range(self.cfg.horizon):
            state, coarse = self._step(state, prev.float(), f, context)
            if temperature <= 0:
                code = self._expected_code(state, coarse)
                cm = code // 10
                logp_cm = torch.log_softmax(coarse, -1).gather(-1, cm[..., None])[..., 0].sum((1, 2))
                fine = torch.log_softmax(self._fine_logits(state, cm), -1)
                logp_mm = fine.gather(-1, (code % 10)[..., None])[..., 0].sum((1, 2))
            else:
                cm, logp_cm = self._choose(coarse, temperature, generator)
                mm, logp_mm = self._choose(self._fine_logits(state, cm), temperature, generator)
                code = 10 * cm + mm
            logp = logp + logp_cm + logp_mm
            prev = prev + (code - self.cfg.max_step_mm).clamp(-self.cfg.max_step_mm, self.cfg.max_step_mm)
            out.append(prev)
        values = torch.stack(out, 2)  # (B*K, P, F, 3)
        b = start_mm.shape[0]
        return values.view(b, num_samples, *values.shape[1:]), logp.view(b, num_samples)

    def _expected_code(self, state, coarse_logits):
        """Deterministic decoding: the expected increment code, rounded to whole millimetres (B, P, 3).

        Greedy argmax stalls while the onset of motion is uncertain (0 mm is the likeliest single
        increment at every step); the expectation moves by the probability-weighted amount instead.
        """
        p_cm = torch.softmax(coarse_logits, -1)  # (B, P, 3, C)
        digits = torch.arange(self.coarse_bins, device=coarse_logits.device).expand_as(p_cm)
        p_mm = torch.softmax(self._fine_logits(state, digits), -1)  # (B, P, 3, C, 10)
        expected_mm = (p_mm * torch.arange(10, device=p_mm.device)).sum(-1)  # (B, P, 3, C)
        code = (p_cm * (10 * digits + expected_mm)).sum(-1)
        return code.round().long().clamp(0, 2 * self.cfg.max_step_mm)

    @staticmethod
    def _choose(logits, temperature: float, generator):
        """Argmax (temperature 0) or a sample per coordinate → (choice (B, P, 3), summed log-prob (B,))."""
        log_probs = torch.log_softmax(logits, -1)
        if temperature <= 0:
            choice = log_probs.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, -1)
            choice = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
            choice = choice.view(logits.shape[:-1])
        return choice, log_probs.gather(-1, choice[..., None])[..., 0].sum((1, 2))


# --- the whole model ------------------------------------------------------------------------------
class ForecasterModel(nn.Module):
    def __init__(self, cfg: ForecasterConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = VisionLanguageEncoder(cfg.encoder)
        self.fm = FlowMatchingHead(cfg.fm, cfg.encoder) if cfg.head == "fm" else None
        self.ar = AutoregressiveHead(cfg.ar, cfg.encoder) if cfg.head == "ar" else None
        if cfg.head not in ("base", "fm", "ar"):
            raise ValueError(f"unknown head {cfg.head!r}")


# --- pool objective (training only) ----------------------------------------------------------------
POOL_POSITION_CENTRE_M = (0.0, 0.0, 0.9)  # camera frame: about where the table is (make_image_input's offset)


class PoolPositionHead(nn.Module):
    """The pool objective of ``molmomotion train --model base-pool``: a linear layer regresses the target's and the
    goal's camera-frame positions from the encoder's global feature (the attention pool's output, which a policy
    reads), so the pool trains without motion. Training only: the saved checkpoint is a plain ``base`` model."""

    def __init__(self, enc: EncoderConfig):
        super().__init__()
        self.linear = nn.Linear(enc.dim, 6)

    def loss(self, enc: Encoding, target_cam_m: torch.Tensor, goal_cam_m: torch.Tensor) -> torch.Tensor:
        """MSE in units of MOTION_SCALE_M on target_cam_m (B, 3) and goal_cam_m (B, 3); a NaN goal (a task without
        a goal point) leaves its term out."""
        centre = torch.tensor(POOL_POSITION_CENTRE_M, device=target_cam_m.device)
        truth = (torch.stack([target_cam_m, goal_cam_m], 1) - centre) / MOTION_SCALE_M  # (B, 2, 3)
        predicted = self.linear(enc.global_feature.float()).view(-1, 2, 3)
        valid = torch.isfinite(truth).all(-1).float()  # (B, 2)
        error = ((predicted - torch.nan_to_num(truth)) ** 2).mean(-1)
        return (error * valid).sum() / valid.sum().clamp_min(1.0)


def grounding_loss(logits: torch.Tensor, target_dist: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between spatial softmaxes: logits (B, 2, h, w), target_dist (B, 2, h, w) summing to 1."""
    log_p = torch.log_softmax(logits.flatten(2), -1)
    return -(target_dist.flatten(2) * log_p).sum(-1).mean()


def make_image_input(rgb: torch.Tensor, xyz_cam_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """rgb (B, 3, h, w) uint8 and xyz (B, 3, h, w) float with NaN = no return → network input (B, 7, h, w)
    and cleaned xyz (NaN → 0)."""
    valid = torch.isfinite(xyz_cam_m).all(1, keepdim=True)
    xyz = torch.where(valid, xyz_cam_m, torch.zeros_like(xyz_cam_m))
    image = torch.cat([rgb.float() / 255.0 - 0.5, xyz - torch.tensor([0.0, 0.0, 0.9]).view(1, 3, 1, 1),
                       valid.float()], 1)
    return image, xyz
