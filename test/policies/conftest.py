"""Shared fixtures: a few real oracle demonstrations (with FM forecasts) and a tiny trained policy."""

import pytest
import torch

from molmomotion_policies.demos import DemoConfig, record_demos
from molmomotion_policies.model import PolicyConfig
from molmomotion_policies.train import TrainConfig, train_policy

FAMILIES = ("push", "stack")


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demos():
    """One train-split episode per family, a frame every 4th trace sample, FM forecast at t0."""
    return record_demos(DemoConfig("train", 1, families=FAMILIES, frames_every=4, forecast=True), progress=False)


@pytest.fixture(scope="session")
def val_demos():
    return record_demos(DemoConfig("validation", 1, families=("push",), frames_every=4, forecast=True),
                        progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoints(demos, val_demos, tmp_path_factory):
    """Variants A and C trained for 10 steps: checkpoints that load and act, not policies that succeed."""
    root = tmp_path_factory.mktemp("policies")
    out = {}
    for variant in ("A", "C"):
        run = train_policy(PolicyConfig.for_variant(variant), demos, val_demos, root / variant,
                           TrainConfig(steps=(10,), batch_size=8, eval_every=5), progress=False,
                           encoding_cache=root / "enc")
        out[variant] = run.checkpoints[10]
    return out
