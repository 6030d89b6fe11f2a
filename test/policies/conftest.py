"""The policy tests run torch on one thread (as the harness agent and the experiment do); tiny protocol encoders."""

import pytest
import torch

from molmomotion_policies.pretrain import PretrainSettings, run_pretraining
from molmomotion_policies.protocol import load_protocol

TINY_PRETRAINING = PretrainSettings(train_episodes=2, val_episodes=1, stage1_steps=4, stage2_steps=4, val_every=2,
                                    workers=1)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """``experiment pretrain``'s whole chain on tiny settings (2 + 1 scenes per family, 4 steps per stage; ~20 s on one
    core): (its result, the folder holding fm_v2.pt and base_matched.pt)."""
    out = tmp_path_factory.mktemp("encoders")
    return run_pretraining(load_protocol(), out, TINY_PRETRAINING, progress=False), out
