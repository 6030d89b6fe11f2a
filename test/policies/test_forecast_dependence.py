"""The shipped C acts on its forecast input; the shipped A and B have none (issue 21).

Each family's first frame of a validation scene (never a test seed), the arm at home: C given the FM forecast and
C given the same forecast turned around its t0 points (the target going the other way) must command clearly
different chunks, far more apart than a 1 mm shift of the forecast moves them. A and B take no forecast: their
heads have no input for it, their controllers need none, and handing them one changes nothing.
"""

import numpy as np
import pytest
import torch

from molmomotion_policies.controller import (
    AgentConfig,
    PolicyController,
    arm_state_from_joints,
    pack_forecast,
)
from molmomotion_policies.model import FEATURE_DIM, FOOTPRINT_DIM
from molmomotion_policies.observation import FORECAST_POINTS, FORECAST_STEPS, PROPRIO_DIM

pytestmark = pytest.mark.slow  # renders 4 scenes and runs the FM forecaster (~15 s)

FAMILIES = ("place-in-container", "place-relative", "push", "stack")
SCENE_SEED = 100_000  # validation split: the demonstrations' validation curve uses it, no evaluation does


@pytest.fixture(scope="module")
def scenes():
    """Per family: first frame, arm state, instruction and the FM forecast at t0 (subsampled, world frame)."""
    from molmomotion_policies.demos import forecast_at_t0
    from molmomotion_ros.forecasting.pipeline import ForecastPipeline
    from molmomotion_ros.planning.kinematics import PandaKinematics
    from molmomotion_sim.suites import load_suite
    from molmomotion_sim.tasks import TASKS
    from molmomotion_sim.world import World

    options = {f.family: f.options for f in load_suite("main").families}
    pipeline = ForecastPipeline("fm", device="cpu", num_samples=8, seed=0)
    kinematics = PandaKinematics()
    world = World()
    out = {}
    try:
        for family in FAMILIES:
            task = TASKS[family](world, options[family])
            task.reset(SCENE_SEED)
            observation = world.render()
            q = world.joint_positions()
            forecast, points_t0, ok = forecast_at_t0(pipeline, observation, task.instruction)
            assert ok, f"no FM forecast for {family}"
            out[family] = (observation, arm_state_from_joints(kinematics, q[:7], q[7:9]), task.instruction,
                           forecast, points_t0)
    finally:
        world.close()
    return out


@pytest.fixture(scope="module")
def controllers():
    # One chunk from a fresh reset is the whole decision; no ensembling, the shipped execution settings.
    return {name: PolicyController.from_checkpoint(name, AgentConfig())[0] for name in "ABC"}


def chunk(controller, scene, forecast=None):
    """The controller's first command for this frame (clamped set-points, yaw, gripper) and the raw chunk."""
    observation, state, instruction, *_ = scene
    controller.reset(instruction, forecast)
    with torch.no_grad():
        raw = controller._predict(observation.rgb, observation.depth_m, observation.camera, state)
    controller.reset(instruction, forecast)
    command = controller.next_chunk(observation.rgb, observation.depth_m, observation.camera, state)
    return command, raw


def test_c_actions_follow_its_forecast(scenes, controllers):
    c = controllers["C"]
    assert c.needs_forecast and c.policy.cfg.forecast_conditioning
    moved, jitter = {}, {}
    for family, scene in scenes.items():
        *_, forecast, points_t0 = scene
        given = pack_forecast(forecast, points_t0, True)
        reversed_ = pack_forecast(2 * points_t0[:, None] - forecast, points_t0, True)  # same start, other way
        shifted = pack_forecast(forecast + 0.001, points_t0, True)
        (cmd_a, raw_a), (cmd_b, raw_b), (_, raw_j) = (chunk(c, scene, f) for f in (given, reversed_, shifted))
        moved[family] = float(np.linalg.norm(raw_a[0] - raw_b[0], axis=-1).mean())
        jitter[family] = float(np.linalg.norm(raw_a[0] - raw_j[0], axis=-1).mean())
        assert moved[family] > 0.005, f"{family}: the chunk moved {moved[family] * 100:.2f} cm"
        assert moved[family] > 10 * jitter[family], (family, moved[family], jitter[family])
        # what the arm is told to do differs too, not only the network's raw output
        assert np.abs(cmd_a.setpoints_m - cmd_b.setpoints_m).max() > 0.002, family
    # Measured with the shipped C: 1-7 cm mean apart over the 8 samples; push's forecasts are short (~9 cm).
    assert np.median(list(moved.values())) > 0.02, moved


def test_c_refuses_to_run_without_a_forecast(controllers):
    from molmomotion_policies.observation import PolicyError

    with pytest.raises(PolicyError, match="forecast"):
        controllers["C"].reset("stack the red block on the blue cube")


@pytest.mark.parametrize("name", ["A", "B"])
def test_a_and_b_take_no_forecast(name, scenes, controllers):
    controller = controllers[name]
    cfg = controller.policy.cfg
    assert not controller.needs_forecast and not cfg.forecast_conditioning
    head_inputs = controller.policy.head.mlp[0].in_features
    assert head_inputs == FEATURE_DIM + 24 + PROPRIO_DIM + (FOOTPRINT_DIM if cfg.footprint else 0)
    c_inputs = controllers["C"].policy.head.mlp[0].in_features
    assert c_inputs - head_inputs == FORECAST_POINTS * (FORECAST_STEPS + 1) * 3 + 1  # C's forecast input alone
    scene = scenes["stack"]
    *_, forecast, points_t0 = scene
    _, without = chunk(controller, scene)
    _, handed = chunk(controller, scene, pack_forecast(2 * points_t0[:, None] - forecast, points_t0, True))
    for x, y in zip(without, handed, strict=True):
        assert np.array_equal(x, y)
