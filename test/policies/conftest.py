"""The policy tests run torch on one thread (as the harness agent and the experiment do)."""

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    torch.set_num_threads(1)
