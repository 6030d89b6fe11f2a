"""Variants differ only where named: encoder source (A fm, B base, D seeded scratch) and C's forecast input."""

from dataclasses import asdict

import pytest
import torch

from molmomotion_policies.model import VARIANTS, GoalConditionedPolicy, PolicyConfig, build_encoder
from molmomotion_policies.observation import PolicyError
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
