"""Where a policy trains: ``training_device`` resolves ``auto``/``cpu``/``cuda``, and the device path (batches drawn
on the CPU, then moved) leaves a CPU run bit-identical to one that never asked for a device."""

from __future__ import annotations

import pytest
import torch

from molmomotion_policies.observation import PolicyError
from molmomotion_policies.train import training_device


def test_auto_is_the_cpu_without_cuda_and_cuda_is_refused_clearly():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: auto is the GPU here")  # the CPU-only branch is this test's subject
    assert training_device("auto") == torch.device("cpu")
    assert training_device("cpu") == torch.device("cpu")
    with pytest.raises(PolicyError, match="torch sees no CUDA GPU"):
        training_device("cuda")


@pytest.mark.parametrize("name", ["tpu", "gpu0", "meta"])
def test_unknown_devices_are_typed_errors(name):
    with pytest.raises(PolicyError, match="training device"):
        training_device(name)
