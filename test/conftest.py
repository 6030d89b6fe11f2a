"""Fixtures shared by the policy tests and the ROS tests of the policy path: a few real oracle
demonstrations (with FM forecasts) and tiny trained policy checkpoints (session-scoped, built only
when a test asks for them)."""

import pytest

FAMILIES = ("push", "stack")


@pytest.fixture(scope="session")
def demo_families():
    """The families of the ``demos`` fixture, in recording order."""
    return FAMILIES


@pytest.fixture(scope="session")
def demos():
    """One train-split episode per family, a frame every 4th trace sample, FM forecast at t0."""
    from molmomotion_policies.demos import DemoConfig, record_demos

    return record_demos(DemoConfig("train", 1, families=FAMILIES, frames_every=4, forecast=True), progress=False)


@pytest.fixture(scope="session")
def val_demos():
    from molmomotion_policies.demos import DemoConfig, record_demos

    return record_demos(DemoConfig("validation", 1, families=("push",), frames_every=4, forecast=True),
                        progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoints(demos, val_demos, tmp_path_factory):
    """Variants A and C trained for 10 steps: checkpoints that load and act, not policies that succeed."""
    from molmomotion_policies.model import PolicyConfig
    from molmomotion_policies.train import TrainConfig, train_policy

    root = tmp_path_factory.mktemp("policies")
    out = {}
    for variant in ("A", "C"):
        run = train_policy(PolicyConfig.for_variant(variant), demos, val_demos, root / variant,
                           TrainConfig(steps=(10,), batch_size=8, eval_every=5), progress=False,
                           encoding_cache=root / "enc")
        out[variant] = run.checkpoints[10]
    return out
