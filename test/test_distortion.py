"""plumb_bob distortion and the raw images fake_franka renders with it: a consumer that reads the CameraInfo's D
the way OpenCV and image_geometry do finds every object where the images show it."""

import numpy as np
import pytest

from molmomotion_ros.distortion import DistortedView, DistortionError, PlumbBob, Rectifier
from molmomotion_ros.robot import TABLE_TOP_Z_M
from molmomotion_sim.world import World

STRONG = PlumbBob(-0.3, 0.1, 0.002, -0.003, 0.0)  # far stronger than a RealSense's: errors would show


@pytest.fixture(scope="module")
def world():
    with World() as w:
        yield w


def test_undistort_inverts_distort_over_the_image():
    xy = np.stack(np.meshgrid(np.linspace(-0.7, 0.7, 15), np.linspace(-0.55, 0.55, 11)), axis=-1)
    for model in (STRONG, PlumbBob(-0.0553, 0.0632, -0.0004, 0.0007, -0.0201), PlumbBob()):
        np.testing.assert_allclose(model.undistort(model.distort(xy)), xy, atol=1e-10)
    assert PlumbBob().is_zero and not STRONG.is_zero
    assert PlumbBob.from_list(STRONG.as_list()) == STRONG


def test_bad_coefficients_are_refused():
    with pytest.raises(DistortionError, match="5 finite"):
        PlumbBob.from_list([0.1, 0.0])
    with pytest.raises(DistortionError, match="cannot be inverted"):
        PlumbBob(k1=-3.0).undistort(np.array([[0.7, 0.5]]))


def test_without_distortion_the_view_is_the_pinhole_render(world):
    world.reset()
    view = DistortedView.build(world.camera, PlumbBob())
    np.testing.assert_array_equal(view.rgb(world.render(view.source).rgb), world.render().rgb)


def _table_point(view: DistortedView, u: float, v: float) -> np.ndarray:
    """Where raw pixel (u, v)'s ray meets the plane 2 cm above the table."""
    cam = view.camera
    ray = cam.T_world_cam[:3, :3] @ view.deproject(np.array([u, v]), 1.0)
    origin = cam.T_world_cam[:3, 3]
    return origin + (TABLE_TOP_Z_M + 0.02 - origin[2]) / ray[2] * ray


def test_objects_appear_where_the_distortion_model_projects_them(world):
    world.reset()
    view = DistortedView.build(world.camera, STRONG)
    cubes = [world.add_object("cube", colour, _table_point(view, u, v)[:2])
             for colour, (u, v) in (("red", (25, 100)), ("blue", (135, 100)), ("green", (12, 60)))]
    world.settle()
    canvas = world.render(view.source)
    labels, depth_m = view.labels(canvas.segmentation), view.depth(canvas.depth_m)
    v_grid, u_grid = np.mgrid[0 : view.camera.height, 0 : view.camera.width]
    for cube in cubes:
        centre_cam = view.camera.world_to_cam(world.object_center(cube))
        uv, _ = view.project(centre_cam)
        u, v = np.rint(uv).astype(int)
        assert labels[v, u] == cube.body_id, cube.name
        pinhole, _ = view.camera.project(centre_cam)
        assert np.linalg.norm(pinhole - uv) > 5.0, "this distortion moves the corners by ~8 px: unremapped, it fails"
        # The aligned depth deprojected through the model lands on the cube's top face.
        mask = labels == cube.body_id
        points_world = view.camera.cam_to_world(view.deproject(np.stack([u_grid[mask], v_grid[mask]], -1),
                                                               depth_m[mask]))
        assert abs(points_world[:, 2].max() - world.object_top_z(cube)) < 0.003, cube.name
        centre_xy = world.object_center(cube)[:2]
        assert np.linalg.norm(np.median(points_world[:, :2], axis=0) - centre_xy) < 0.02, cube.name


def test_rectifying_the_raw_images_gives_back_the_pinhole_render(world):
    """fake_franka's raw images, rectified as the nodes do, are the pinhole render (away from the borders, where
    the raw image has no data): colour within bilinear blur, depth exactly (nearest neighbour, no invented
    depths), and without rectification they would not be."""
    world.reset()
    world.add_object("cube", "red", [0.45, 0.1])
    world.add_object("cube", "blue", [0.6, -0.15])
    world.settle()
    view = DistortedView.build(world.camera, STRONG)
    canvas = world.render(view.source)
    raw_rgb, raw_depth = view.rgb(canvas.rgb), view.depth(canvas.depth_m)
    pinhole = world.render()
    rectifier = Rectifier.for_camera(world.camera, STRONG)
    assert Rectifier.for_camera(world.camera, STRONG).raw_u is rectifier.raw_u  # maps cached per (K, D, size)
    rgb, depth = rectifier.rgb(raw_rgb), rectifier.depth(raw_depth)
    margin = 12
    inner = (slice(margin, -margin), slice(margin, -margin))
    assert rectifier.inside[inner].all()
    colour_error = np.abs(rgb[inner].astype(int) - pinhole.rgb[inner].astype(int))
    assert np.median(colour_error) <= 2 and np.mean(colour_error) < 6
    raw_colour_error = np.abs(raw_rgb[inner].astype(int) - pinhole.rgb[inner].astype(int))
    assert np.mean(raw_colour_error) > 2 * np.mean(colour_error)
    both = np.isfinite(depth[inner]) & np.isfinite(pinhole.depth_m[inner])
    depth_error = np.abs(depth[inner] - pinhole.depth_m[inner])[both]
    assert both.mean() > 0.95 and np.mean(depth_error < 0.005) > 0.97
    assert set(np.unique(depth[np.isfinite(depth)])) <= set(np.unique(raw_depth[np.isfinite(raw_depth)]))
    # Pincushion distortion: the corner rays leave the raw image, so those pixels have no depth, black colour.
    pincushion = Rectifier.for_camera(world.camera, PlumbBob(k1=0.3))
    outside = ~pincushion.inside
    assert outside[0, 0] and outside[-1, -1] and not outside[60, 80]
    assert np.isnan(pincushion.depth(raw_depth)[outside]).all() and (pincushion.rgb(raw_rgb)[outside] == 0).all()
