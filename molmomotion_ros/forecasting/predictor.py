"""Neural backends (FM, AR) and the grounding model: numpy in, numpy out, models in eval mode.

Device, resizing and frame handling happen here, at the edge; the networks live in models.py.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .interface import ForecasterBackend
from .models import MOTION_SCALE_M, Encoding, ForecasterModel, make_image_input
from .preprocess import depth_to_xyz_cam, pixels_to_model, resize_inputs
from .text import default_text_encoder
from .types import TRACK_HZ, BackendUnavailableError, ForecastInputError, ForecastRequest

logger = logging.getLogger(__name__)
CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


def shipped_checkpoint(name: str) -> Path:
    """Path of a checkpoint shipped in the package: ``base``, ``fm`` or ``ar``."""
    return CHECKPOINT_DIR / f"{name}.pt"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("device 'cuda' was asked for but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise BackendUnavailableError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return torch.device(device)


class EncodedScene:
    """A model's encoding of one frame + instruction, with the query points in model coordinates."""

    def __init__(self, model: ForecasterModel, rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray,
                 instruction: str, device: torch.device):
        enc_cfg = model.cfg.encoder
        self.image_size = (depth_m.shape[1], depth_m.shape[0])
        self.model_size = (enc_cfg.input_width, enc_cfg.input_height)
        rgb_small, xyz_small = resize_inputs(rgb, depth_to_xyz_cam(depth_m, K), *self.model_size)
        image, xyz = make_image_input(rgb_small[None], xyz_small[None])
        tokens, mask = default_text_encoder().encode([instruction])
        self.device = device
        self.encoding: Encoding = model.encoder(image.to(device), xyz.to(device), torch.from_numpy(tokens).to(device),
                                                torch.from_numpy(mask).to(device))

    def points_uv_model(self, points_2d: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(pixels_to_model(points_2d, self.image_size, self.model_size))[None].to(self.device)


def _frame_key(rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instruction: str) -> tuple:
    digest = hashlib.blake2b(digest_size=16)
    for array in (rgb, depth_m, K):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.data)
    return digest.digest(), instruction


class SceneEncoder:
    """One model's encoder with its last encoding kept, keyed by the frame's content.

    Grounding (which object, where do its query points go) and the forecast head read the same
    encoding, so when both use one model the frame is encoded once (~10 ms of ~45 on a CPU core).
    Keyed by content, never by identity, so a new frame is never served an old encoding.
    """

    def __init__(self, model: ForecasterModel, device: torch.device):
        self.model = model
        self.device = device
        self._last: tuple[tuple, EncodedScene] | None = None
        self._lock = threading.Lock()
        self.hits = self.misses = 0  # how often a second reader found the frame already encoded

    def encode(self, rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instruction: str) -> EncodedScene:
        key = _frame_key(rgb, depth_m, K, instruction)
        with self._lock:
            if self._last is not None and self._last[0] == key:
                self.hits += 1
                return self._last[1]
            self.misses += 1
        scene = EncodedScene(self.model, rgb, depth_m, K, instruction, self.device)
        with self._lock:
            self._last = (key, scene)
        return scene


@dataclass
class NeuralBackend(ForecasterBackend):
    """FM or AR forecaster from a checkpoint (the shipped one by default)."""

    head: str = "fm"
    checkpoint: str | Path | None = None
    device: str = "auto"
    steps: int = 10  # Euler steps (FM)
    temperature: float = 0.7  # sampling temperature for K > 1 (AR); K = 1 decodes greedily
    seed: int = 0

    def __post_init__(self) -> None:
        path = Path(self.checkpoint) if self.checkpoint else shipped_checkpoint(self.head)
        self.model, self.meta = load_checkpoint(path)
        if self.model.cfg.head != self.head:
            raise BackendUnavailableError(f"{path} holds a {self.model.cfg.head!r} model, not {self.head!r}")
        if self.steps < 1:
            raise ValueError("steps must be >= 1")
        self.torch_device = resolve_device(self.device)
        self.model.to(self.torch_device).eval()
        self.name = self.head
        self.model_id = f"{self.head}:{path.name}:{self.meta.get('code_revision', '?')}"
        self.step_s = self.model.cfg.stride / TRACK_HZ
        self.scene_encoder = SceneEncoder(self.model, self.torch_device)
        self.horizon = self.model.cfg.fm.horizon if self.head == "fm" else self.model.cfg.ar.horizon

    @torch.inference_mode()
    def forecast_cam(self, request: ForecastRequest):
        if request.horizon > self.horizon:
            raise ForecastInputError(f"the {self.head} model forecasts at most {self.horizon} steps; "
                                     f"asked for {request.horizon}")
        scene = self.scene_encoder.encode(request.history_rgb[-1], request.history_depth_m[-1], request.K,
                                          request.instruction)
        uv = scene.points_uv_model(request.points_2d)
        pts = torch.from_numpy(request.points_cam_m)[None].to(self.torch_device)
        generator = torch.Generator(device=self.torch_device).manual_seed(noise_seed(self.seed, request.noise_key))
        K = request.num_samples
        if self.head == "fm":
            scaled = self.model.fm.sample(scene.encoding, uv, pts, K, self.steps, generator)[0]  # (K, P, F, 3)
            points = (pts[0, :, None] + scaled * MOTION_SCALE_M).cpu().numpy()
            flat = points.reshape(K, -1)
            # Density proxy: hypotheses near the others rank first (no likelihood for a flow sampler).
            scores = -np.linalg.norm(flat[:, None] - flat[None], axis=-1).mean(1) if K > 1 else np.zeros(1)
        else:
            start = torch.round((pts - pts[:, :1]) * 1000.0).long()  # (1, P, 3) mm from point 0
            temperature = 0.0 if K == 1 else self.temperature
            values, logp = self.model.ar.decode(scene.encoding, uv, pts, start, K, temperature, generator)
            points = (pts[0, :1, None].cpu().numpy() + values[0].cpu().numpy() / 1000.0)  # (K, P, F, 3)
            scores = logp[0].cpu().numpy()
        return points[:, :, : request.horizon].astype(np.float32), scores


def noise_seed(seed: int, noise_key: int) -> int:
    """The sampling generator's seed: ``seed`` alone for key 0 (one noise for every request, as before keys),
    else a 63-bit mix of both, so nearby stamps get unrelated noise."""
    if noise_key == 0:
        return seed
    return int.from_bytes(hashlib.blake2b(f"{seed}:{noise_key}".encode(), digest_size=8).digest(), "little") >> 1


def fm_backend(**kwargs) -> NeuralBackend:
    return NeuralBackend(head="fm", **kwargs)


def ar_backend(**kwargs) -> NeuralBackend:
    return NeuralBackend(head="ar", **kwargs)


def molmomotion4b_backend(weights_dir=None, **kwargs):
    from .molmomotion4b import WEIGHTS_HINT, MolmoMotion4BForecaster

    if not weights_dir:
        raise BackendUnavailableError("MolmoMotion-4B needs the folder of its weights (forecaster_node: the "
                                      f"checkpoint parameter; molmomotion forecast: --checkpoint); get them with: "
                                      f"{WEIGHTS_HINT}")
    return MolmoMotion4BBackend(MolmoMotion4BForecaster(weights_dir, **kwargs))


class MolmoMotion4BBackend(ForecasterBackend):
    """The released MolmoMotion-4B behind the common interface (GPU machine, local weights)."""

    name = "molmomotion4b"

    def __init__(self, forecaster):
        self.forecaster = forecaster
        self.model_id = getattr(forecaster, "model_id", "MolmoMotion-4B")

    def forecast_cam(self, request: ForecastRequest):
        forecast = self.forecaster.predict(request)
        return forecast.points_cam_m, forecast.scores


class GroundingModel:
    """An encoder's grounding: where is the instruction's target object, and where should it go?

    By default the base checkpoint's; :meth:`sharing` reads a forecaster's own grounding head (trained
    with it) through that forecaster's :class:`SceneEncoder`, so one encoder pass serves both.
    """

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto"):
        self.model, self.meta = load_checkpoint(Path(checkpoint) if checkpoint else shipped_checkpoint("base"))
        self.device = resolve_device(device)
        self.model.to(self.device).eval()
        self.scene_encoder = SceneEncoder(self.model, self.device)

    @classmethod
    def sharing(cls, backend: "NeuralBackend") -> "GroundingModel":
        """The grounding of ``backend``'s own model, sharing its encoding cache."""
        grounding = cls.__new__(cls)
        grounding.model, grounding.meta = backend.model, backend.meta
        grounding.device = backend.torch_device
        grounding.scene_encoder = backend.scene_encoder
        return grounding

    @torch.inference_mode()
    def heatmaps(self, rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instruction: str) -> np.ndarray:
        """(2, h, w) probabilities at camera resolution: channel 0 target object, 1 goal location."""
        scene = self.scene_encoder.encode(rgb, depth_m, K, instruction)
        logits = scene.encoding.grounding_logits  # (1, 2, h', w')
        h, w = depth_m.shape
        probs = torch.softmax(logits.flatten(2), -1).view_as(logits)
        up = torch.nn.functional.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)[0]
        return (up / up.flatten(1).sum(-1)[:, None, None]).cpu().numpy()
