"""Checkpoints: weights + the config that rebuilds the network + provenance, under a schema version."""

from __future__ import annotations

import datetime
import io
import subprocess
from pathlib import Path

import torch

from .models import ForecasterConfig, ForecasterModel

SCHEMA_VERSION = 1
FORMAT = "molmomotion_ros.forecaster"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, of another schema, or does not fit its declared network."""


def code_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_checkpoint(model: ForecasterModel, path: str | Path, meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT, "schema_version": SCHEMA_VERSION, "config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": {"code_revision": code_revision(), "created": datetime.datetime.now(datetime.UTC).isoformat(),
                 **(meta or {})},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[ForecasterModel, dict]:
    """Rebuild the network from the stored config and load its weights; (model in eval mode, meta)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # truncated or not a torch file at all
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a molmomotion_ros forecaster checkpoint")
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"{path} has schema version {payload.get('schema_version')}; this code reads "
                              f"{SCHEMA_VERSION}")
    try:
        cfg = ForecasterConfig.from_dict(payload["config"])
        model = ForecasterModel(cfg)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} holds an invalid model config: {err}") from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        reason = first[0] if first else err
        raise CheckpointError(f"{path}: weights do not fit the declared network ({reason})") from None
    return model.eval(), payload.get("meta", {})
