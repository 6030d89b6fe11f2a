"""Variants differ only where named: encoder source (A fm, B base, D seeded scratch) and C's forecast input."""

from dataclasses import asdict

import numpy as np
import pytest
import torch

from molmomotion_policies.model import ENCODING_DIM, VARIANTS, GoalConditionedPolicy, PolicyConfig, build_encoder
from molmomotion_policies.observation import PROPRIO_DIM, PolicyError
from molmomotion_ros.forecasting.checkpoint import load_checkpoint
from molmomotion_ros.forecasting.predictor import shipped_checkpoint

TRUNK = ("stem.", "down1.", "down2.")


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def shipped():
    return {name: load_checkpoint(shipped_checkpoint(name))[0].encoder.state_dict() for name in ("fm", "base")}


def test_configs_differ_only_in_the_named_fields():
    configs = {v: asdict(PolicyConfig.for_variant(v)) for v in VARIANTS}
    differing = {v: {k for k in configs[v] if configs[v][k] != configs["A"][k]} for v in VARIANTS}
    assert differing == {"A": set(), "B": {"variant", "encoder_init"}, "C": {"variant", "forecast_conditioning"},
                         "D": {"variant", "encoder_init"}}


def test_a_and_b_encoders_come_from_their_checkpoints(shipped):
    a = build_encoder("fm").state_dict()
    b = build_encoder("base").state_dict()
    assert _equal(a, shipped["fm"]) and _equal(b, shipped["base"])
    # fm.pt and base.pt share the CNN trunk and differ in everything after it.
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(TRUNK))
    assert not any(torch.equal(a[k], b[k]) for k in a if not k.startswith(TRUNK))


def test_scratch_encoder_is_random_and_seeded(shipped):
    d0, d0_again, d1 = (build_encoder("scratch", seed).state_dict() for seed in (0, 0, 1))
    assert _equal(d0, d0_again)
    assert not torch.equal(d0["stem.0.weight"], d1["stem.0.weight"])
    assert not torch.equal(d0["stem.0.weight"], shipped["fm"]["stem.0.weight"])


def test_heads_have_the_same_shape_except_c(tmp_path):
    heads = {v: GoalConditionedPolicy(PolicyConfig.for_variant(v)).head for v in VARIANTS}
    shapes = {v: {k: tuple(p.shape) for k, p in head.named_parameters()} for v, head in heads.items()}
    assert shapes["A"] == shapes["B"] == shapes["D"]
    assert shapes["C"]["mlp.0.weight"][1] > shapes["A"]["mlp.0.weight"][1]  # + the forecast's points


def test_checkpoint_round_trip_and_refusals(tmp_path):
    policy = GoalConditionedPolicy(PolicyConfig.for_variant("B"))
    path = policy.save(tmp_path / "p.pt", meta={"step": 3})
    loaded, meta = GoalConditionedPolicy.from_checkpoint(path)
    assert meta["step"] == 3 and loaded.cfg == policy.cfg
    assert _equal(loaded.state_dict(), policy.state_dict())
    with pytest.raises(PolicyError, match="no policy checkpoint"):
        GoalConditionedPolicy.from_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not torch")
    with pytest.raises(PolicyError, match="not a readable"):
        GoalConditionedPolicy.from_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(PolicyError, match="unknown variant"):
        PolicyConfig.for_variant("E")


def test_c_needs_its_forecast():
    policy = GoalConditionedPolicy(PolicyConfig.for_variant("C")).eval()
    from molmomotion_policies.model import ENCODING_DIM
    from molmomotion_policies.observation import PROPRIO_DIM

    with pytest.raises(PolicyError, match="forecast"):
        policy(torch.zeros(1, ENCODING_DIM), torch.zeros(1, PROPRIO_DIM), torch.zeros(1, ENCODING_DIM))


# --- fine-tuning: the encoder split and the checkpoints ------------------------------------------
def _frames(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (n, 3, 60, 80), generator=g, dtype=torch.uint8)
    xyz = torch.rand(n, 3, 60, 80, generator=g) * 0.4 + torch.tensor([0.0, 0.0, 0.7]).view(1, 3, 1, 1)
    xyz[:, :, :5, :7] = float("nan")  # holes in the depth, as rendered frames have
    tokens = torch.randn(n, 10, 384, generator=g)
    mask = torch.ones(n, 10, dtype=torch.bool)
    mask[:, 7:] = False
    T = torch.eye(4).repeat(n, 1, 1)
    T[:, :3, 3] = torch.tensor([0.5, 0.1, 1.2])
    uv = torch.rand(n, 2, generator=g) * torch.tensor([79.0, 59.0])
    return rgb, xyz, tokens, mask, T, uv


@pytest.mark.parametrize("source", ["fm", "base"])
def test_trunk_split_gives_exactly_the_encoders_output(source):
    from molmomotion_policies.model import encoder_trunk, make_image_input

    rgb, xyz, tokens, mask, T, uv = _frames()
    policy = GoalConditionedPolicy(PolicyConfig.for_variant("A" if source == "fm" else "B", finetune="post_trunk"))
    image, xyz_clean = make_image_input(rgb, xyz)
    with torch.no_grad():
        whole = policy.encoder(image, xyz_clean, tokens, mask)
        split = policy.encoder.post_trunk(encoder_trunk(policy.encoder, image, xyz_clean), tokens, mask)
        via_trunk = policy.encode_from_trunk(encoder_trunk(policy.encoder, image, xyz_clean), tokens, mask, T, uv)
    for key in whole.__dataclass_fields__:
        assert torch.equal(getattr(whole, key), getattr(split, key)), key
    assert torch.equal(via_trunk, policy.encode(rgb, xyz, tokens, mask, T, uv))


def test_only_post_trunk_layers_train_when_fine_tuning():
    from molmomotion_policies.model import POST_TRUNK, TRUNK

    frozen = GoalConditionedPolicy(PolicyConfig.for_variant("A"))
    tuned = GoalConditionedPolicy(PolicyConfig.for_variant("A", finetune="post_trunk"))
    assert not any(p.requires_grad for p in frozen.encoder.parameters())
    trainable = {n.split(".")[0] for n, p in tuned.encoder.named_parameters() if p.requires_grad}
    assert trainable == set(POST_TRUNK)
    assert {n.split(".")[0] for n, _ in tuned.encoder.named_parameters()} == set(TRUNK) | set(POST_TRUNK)
    with pytest.raises(PolicyError, match="finetune"):
        PolicyConfig.for_variant("A", finetune="everything")


def test_shipped_checkpoints_load():
    from pathlib import Path

    from molmomotion_policies.model import READABLE_SCHEMAS, SCHEMA_VERSION

    root = Path(__file__).resolve().parents[2] / "policies" / "checkpoints"
    for variant in ("A", "B"):
        payload = torch.load(root / f"{variant}.pt", map_location="cpu", weights_only=False)
        assert payload["schema_version"] in READABLE_SCHEMAS
        policy, meta = GoalConditionedPolicy.from_checkpoint(root / f"{variant}.pt")
        assert policy.cfg.variant == variant and meta.get("step")
        if payload["schema_version"] == 1:
            assert "finetune" not in payload["config"] and policy.cfg.finetune == "none"
    assert SCHEMA_VERSION == max(READABLE_SCHEMAS)


def test_schema_1_payload_loads_as_frozen(tmp_path):
    """A checkpoint written before fine-tuning existed (schema 1, no finetune field) loads as finetune="none"."""
    from molmomotion_policies.model import FORMAT

    policy = GoalConditionedPolicy(PolicyConfig.for_variant("B"))
    config = asdict(policy.cfg)
    config.pop("finetune")
    torch.save({"format": FORMAT, "schema_version": 1, "config": config, "state_dict": policy.state_dict(),
                "meta": {"step": 1}}, tmp_path / "old.pt")
    loaded, _ = GoalConditionedPolicy.from_checkpoint(tmp_path / "old.pt")
    assert loaded.cfg.finetune == "none" and _equal(loaded.state_dict(), policy.state_dict())
    torch.save({"format": FORMAT, "schema_version": 99, "config": config, "state_dict": {}}, tmp_path / "new.pt")
    with pytest.raises(PolicyError, match="schema 99"):
        GoalConditionedPolicy.from_checkpoint(tmp_path / "new.pt")


def test_geometry_skip_starts_as_the_plain_head_and_round_trips(tmp_path):
    torch.manual_seed(0)
    plain = GoalConditionedPolicy(PolicyConfig.for_variant("A")).head.eval()
    torch.manual_seed(0)
    policy = GoalConditionedPolicy(PolicyConfig.for_variant("A", geometry_skip=True))
    head = policy.head.eval()
    encoding, encoding_t0 = torch.randn(4, ENCODING_DIM), torch.randn(4, ENCODING_DIM)
    proprio = torch.randn(4, PROPRIO_DIM)
    # Zero-initialised: training starts from exactly the plain head.
    assert torch.equal(head(encoding, proprio, encoding_t0).pos_m, plain(encoding, proprio, encoding_t0).pos_m)
    with torch.no_grad():
        head.skip.weight.normal_()
    assert not torch.allclose(head(encoding, proprio, encoding_t0).pos_m, plain(encoding, proprio, encoding_t0).pos_m)
    loaded, _ = GoalConditionedPolicy.from_checkpoint(policy.save(tmp_path / "skip.pt"))
    assert loaded.cfg.geometry_skip and _equal(loaded.state_dict(), policy.state_dict())
    assert plain.skip is None


def _box_points(half_x: float, half_y: float, yaw: float, centre=(0.5, 0.1), height: float = 0.04) -> torch.Tensor:
    """A box's top face and the table around it as a (1, 3, 1, N) 'image' of world points (camera = world)."""
    from molmomotion_ros.robot import TABLE_TOP_Z_M

    u, v = torch.meshgrid(torch.linspace(-half_x, half_x, 13), torch.linspace(-half_y, half_y, 9), indexing="ij")
    c, s = torch.cos(torch.tensor(yaw)), torch.sin(torch.tensor(yaw))
    top = torch.stack([centre[0] + c * u - s * v, centre[1] + s * u + c * v,
                       torch.full_like(u, TABLE_TOP_Z_M + height)], 0).reshape(3, -1)
    gx, gy = torch.meshgrid(torch.linspace(-0.1, 0.1, 21), torch.linspace(-0.1, 0.1, 21), indexing="ij")
    table = torch.stack([centre[0] + gx, centre[1] + gy, torch.full_like(gx, TABLE_TOP_Z_M)], 0).reshape(3, -1)
    nan = torch.full((3, 5), float("nan"))  # no returns are ignored
    return torch.cat([top, table, nan], 1)[None, :, None, :]


@pytest.mark.parametrize("yaw_deg", [-70.0, -10.0, 25.0, 80.0])
def test_the_footprint_measures_a_block_mod_180_and_a_cube_mod_90(yaw_deg):
    from molmomotion_policies.model import target_footprint

    yaw, T = float(np.radians(yaw_deg)), torch.eye(4)[None]
    target = torch.tensor([[0.5, 0.1, 0.8]])
    block = target_footprint(_box_points(0.03, 0.018, yaw), T, target)[0]
    assert block[0] > 0.5  # 117 top-face points / 50, the table excluded
    angle = float(torch.atan2(block[2], block[1])) / 2  # m2's phase is twice the long axis
    assert abs((angle - yaw + np.pi / 2) % np.pi - np.pi / 2) < np.radians(2)
    cube = target_footprint(_box_points(0.02, 0.02, yaw), T, target)[0]
    assert torch.hypot(cube[1], cube[2]) < 0.05  # a square has no second-moment direction...
    angle = float(torch.atan2(-cube[4], -cube[3])) / 4  # ...but its fourth moment peaks at the corners
    assert abs((angle - yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4) < np.radians(2)
    far = target_footprint(_box_points(0.03, 0.018, yaw), T, torch.tensor([[0.8, -0.2, 0.8]]))[0]
    assert torch.equal(far, torch.zeros(5))  # nothing within reach of a far target: no orientation


def test_the_footprint_enters_the_head_relative_to_the_gripper_yaw():
    from molmomotion_policies.model import FEATURE_DIM, _rotate

    torch.manual_seed(0)
    head = GoalConditionedPolicy(PolicyConfig.for_variant("A", footprint=True)).head.eval()
    plain = GoalConditionedPolicy(PolicyConfig.for_variant("A")).head
    assert head.mlp[0].in_features == plain.mlp[0].in_features + 5
    encoding, proprio = torch.randn(1, ENCODING_DIM), torch.randn(1, PROPRIO_DIM)
    turn = torch.tensor([0.7])
    # Turning the object and the gripper by the same angle changes nothing the head sees.
    turned_encoding, turned_proprio = encoding.clone(), proprio.clone()
    fp = slice(FEATURE_DIM, FEATURE_DIM + 5)
    turned_encoding[:, fp.start + 1:fp.start + 3] = _rotate(encoding[:, fp.start + 1:fp.start + 3], 2 * turn)
    turned_encoding[:, fp.start + 3:fp.stop] = _rotate(encoding[:, fp.start + 3:fp.stop], 4 * turn)
    yaw = torch.atan2(proprio[:, 3], proprio[:, 4]) + turn
    turned_proprio[:, 3], turned_proprio[:, 4] = torch.sin(yaw), torch.cos(yaw)
    a = head(encoding, proprio, encoding)
    b = head(turned_encoding, turned_proprio, turned_encoding)
    assert not torch.allclose(a.pos_m, b.pos_m)  # the proprio's yaw itself still differs...
    head.mlp[0].weight.data[:, FEATURE_DIM + 24 + 3:FEATURE_DIM + 24 + 5] = 0  # ...so ignore it, then:
    a = head(encoding, proprio, encoding)
    b = head(turned_encoding, turned_proprio, turned_encoding)
    assert torch.allclose(a.pos_m, b.pos_m, atol=1e-5)
