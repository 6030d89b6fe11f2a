"""Camera conventions: optical frame, metric depth, pixel ↔ world round trips on rendered frames."""

import numpy as np
import pytest

from molmomotion_ros.camera import CameraConfigError, PinholeCamera, look_at
from molmomotion_ros.paths import config_path
from molmomotion_ros.robot import TABLE_TOP_Z_M
from molmomotion_sim.world import World


@pytest.fixture(scope="module")
def world():
    with World() as w:
        yield w


def test_config_camera_looks_down_at_the_table():
    cam = PinholeCamera.from_yaml(config_path("camera.yaml"))
    assert cam.T_world_cam[2, 2] < 0  # optical z points down toward the table
    assert cam.T_world_cam[1, 0] > 0  # the camera faces the robot: image right is the robot's left (+y)


def test_world_pixel_depth_world_round_trip():
    cam = PinholeCamera.from_yaml(config_path("camera.yaml"))
    rng = np.random.default_rng(0)
    points_world_m = np.c_[rng.uniform(0.3, 0.75, 50), rng.uniform(-0.3, 0.3, 50), rng.uniform(0.63, 0.8, 50)]
    pixels, depth_m = cam.project(cam.world_to_cam(points_world_m))
    back = cam.cam_to_world(cam.deproject(pixels, depth_m))
    assert np.abs(back - points_world_m).max() < 1e-9


def test_rendered_depth_deprojects_onto_the_table_and_objects(world):
    world.reset()
    cube = world.add_object("cube", "red", [0.5, 0.05])
    world.settle()
    obs = world.render()
    cam = obs.camera
    points_world_m = cam.cam_to_world(cam.depth_to_points_cam(obs.depth_m))  # (H, W, 3)
    table = obs.segmentation == world.table_id
    assert table.sum() > 1000
    assert np.nanmax(np.abs(points_world_m[table][:, 2] - TABLE_TOP_Z_M)) < 0.002
    # Cube top face: project its known centre, read the rendered depth, go back to the world.
    top_world = world.object_center(cube) + [0, 0, cube.half_extents_m[2]]
    (u, v), _ = cam.project(cam.world_to_cam(top_world[None]))[0][0], None
    u, v = int(round(u)), int(round(v))
    assert obs.segmentation[v, u] == cube.body_id
    back = cam.cam_to_world(cam.deproject(np.array([u, v], float), obs.depth_m[v, u]))
    assert abs(back[2] - top_world[2]) < 0.002
    assert np.linalg.norm(back[:2] - top_world[:2]) < 0.006  # the rounded pixel is within 6 mm


def test_background_depth_is_nan(world):
    world.reset()
    cam = world.camera.with_pose(look_at([1.1, 0.4, 0.8], [1.1, 0.4, 5.0], up=(1, 0, 0)))  # at the sky
    obs = world.render(cam)
    assert np.isnan(obs.depth_m).mean() > 0.9
    assert (obs.segmentation == -1).mean() > 0.9


@pytest.mark.parametrize("bad", [
    {"width": 0, "height": 10, "vertical_fov_deg": 50, "pose": {"eye_m": [0, 0, 1], "look_at_m": [1, 0, 0]}},
    {"width": 10, "height": 10, "vertical_fov_deg": 50},
    {"width": 10, "height": 10, "vertical_fov_deg": 50, "pose": {"eye_m": [0, 0, 1], "look_at_m": [0, 0, 1]}},
    {"width": "ten", "height": 10, "vertical_fov_deg": 50, "pose": {"eye_m": [0, 0, 1], "look_at_m": [1, 0, 0]}},
])
def test_bad_camera_configs_raise(bad):
    with pytest.raises(CameraConfigError):
        PinholeCamera.from_dict(bad)
