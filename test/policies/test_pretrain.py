"""The protocol's compute-matched encoders (issue 21): ``generate-data --seed-start``, ``train --model base-pool``, the
resumable ``experiment pretrain`` chain on tiny settings, and a policy experiment on the encoders it makes."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from molmomotion_policies.experiment import ExperimentConfig, encoder_digest, run_experiment, train_hash
from molmomotion_policies.model import PROTOCOL_ENCODERS, VARIANTS, PolicyConfig, build_encoder
from molmomotion_policies.observation import PolicyError
from molmomotion_policies.pretrain import PretrainError, PretrainSettings, pretraining_plan, run_pretraining
from molmomotion_policies.protocol import load_protocol, parse_protocol
from molmomotion_policies.train import TrainConfig, encoding_paths, run_identity
from molmomotion_ros.cli import main as molmomotion
from molmomotion_ros.forecasting.checkpoint import load_checkpoint, save_checkpoint
from molmomotion_ros.forecasting.models import ForecasterConfig, ForecasterModel
from molmomotion_ros.forecasting.predictor import shipped_checkpoint
from molmomotion_sim.dataset import generate_dataset
from molmomotion_sim.seeds import SeedRangeError, seeds_from

# The `pretrained` fixture's settings (conftest.py): a second call with them must skip everything.
TINY = PretrainSettings(train_episodes=2, val_episodes=1, stage1_steps=4, stage2_steps=4, val_every=2, workers=1)
TRUNK = ("stem.", "down1.", "down2.")


# --- generate-data --seed-start ----------------------------------------------------------------------------
def test_seeds_from_stays_inside_the_split():
    assert seeds_from("train", 50000, 3) == [50000, 50001, 50002]
    assert seeds_from("validation", 109999, 1) == [109999]
    for split, first, count, message in (("validation", 50000, 1, "not a validation seed"),
                                         ("train", 99999, 2, "leave the train split"),
                                         ("train", -1, 1, "not a train seed"),
                                         ("train", 0, 0, "positive"), ("nope", 0, 1, "unknown split")):
        with pytest.raises(SeedRangeError, match=message):
            seeds_from(split, first, count)


def test_generate_data_seed_start_is_checked_and_recorded(tmp_path, capsys):
    common = ["generate-data", "--episodes", "1", "--families", "push", "--workers", "1", "--horizon", "8",
              "--no-progress"]
    for split, start in (("validation", "50000"), ("train", "99999"), ("test", "109999")):
        assert molmomotion([*common, "--split", split, "--seed-start", start, "--episodes", "2",
                            "--out", str(tmp_path / "bad")]) == 2
        assert "molmomotion: error:" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before any folder is made
    assert molmomotion([*common, "--split", "validation", "--seed-start", "100100", "--out", str(tmp_path / "v")]) == 0
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    assert manifest["seed_start"] == 100100 and manifest["seeds"] == {"push": [100100]}
    default = generate_dataset("validation", 1, tmp_path / "d", families=["push"], horizon=8, workers=1,
                               progress=False)  # no seed_start: the split's first seed, as before
    assert default["seed_start"] == 100000 and default["seeds"] == {"push": [100000]}


# --- the plan ----------------------------------------------------------------------------------------------
def test_the_protocols_plan_is_compute_matched_and_amended_protocols_are_checked():
    protocol = load_protocol()
    plan = pretraining_plan(protocol)
    assert plan["families"] == ["place-in-container", "place-relative", "stack"]  # push held out
    assert plan["data"] == {"train": {"split": "train", "seed_start": 50000, "episodes_per_family": 1500},
                            "validation": {"split": "validation", "seed_start": 100100, "episodes_per_family": 100}}
    assert plan["batch_size"] == 32
    assert plan["stages"] == {"stage1": {"kind": "base", "init": None, "steps": 1500},
                              "fm_v2": {"kind": "fm", "init": "stage1", "steps": 2500},
                              "base_matched": {"kind": "base-pool", "init": "stage1", "steps": 2500}}
    unmatched = copy.deepcopy(protocol.raw)
    unmatched["encoders"]["base_matched"]["stages"][1]["steps"] = 2000
    with pytest.raises(PretrainError, match="not compute-matched"):
        pretraining_plan(parse_protocol(unmatched))
    other_objective = copy.deepcopy(protocol.raw)
    other_objective["encoders"]["base_matched"]["stages"][1]["objective"] = "grounding + captioning"
    with pytest.raises(PretrainError, match="pool"):
        pretraining_plan(parse_protocol(other_objective))
    with pytest.raises(PretrainError, match="1500 seeds per family"):
        pretraining_plan(protocol, PretrainSettings(train_episodes=1501))


# --- the chain ---------------------------------------------------------------------------------------------
def test_the_tiny_chain_makes_both_encoders_and_a_second_call_skips_everything(pretrained):
    result, out = pretrained
    assert result.ran == ["data-train", "data-validation", "stage1", "fm_v2", "base_matched"]
    summary = json.loads((out / "pretrain.json").read_text())
    assert summary["protocol_settings"] is False and summary["overrides"]["stage2_steps"] == 4
    stages = summary["stages"]
    assert (stages["data-train"]["first_seed"], stages["data-train"]["last_seed"]) == (50000, 50001)
    assert (stages["data-validation"]["first_seed"], stages["data-validation"]["episodes"]) == (100100, 3)
    for name, kind in (("stage1", "base"), ("fm_v2", "fm"), ("base_matched", "base-pool")):
        record = stages[name]
        assert (record["kind"], record["steps"], record["batch_size"]) == (kind, 4, 32)
        assert [row["step"] for row in record["history"]] == [2, 4]
        assert record["final"]["val_loss"] > 0 and record["wall_s"] > 0
    assert stages["fm_v2"]["init"] == stages["base_matched"]["init"] == str(out / "stage1.pt")
    assert stages["fm_v2"]["train_episodes"] == stages["base_matched"]["train_episodes"] == 6  # the same scenes
    assert set(summary["encoders"]) == {"fm_v2", "base_matched"}

    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "pretrain.json")
    stamps = [p.stat().st_mtime_ns for p in files]
    again = run_pretraining(load_protocol(), out, TINY, progress=False)
    assert again.ran == [] and again.summary["last_call"]["skipped"] == result.ran
    assert [p.stat().st_mtime_ns for p in files] == stamps
    assert again.summary["stages"]["fm_v2"]["history"] == stages["fm_v2"]["history"]
    with pytest.raises(PretrainError, match="another plan"):
        run_pretraining(load_protocol(), out, PretrainSettings(**{**TINY.__dict__, "stage2_steps": 5}), progress=False)


def test_base_pool_trains_the_pool_and_saves_no_regression_layer(pretrained):
    _, out = pretrained
    stage1, _ = load_checkpoint(out / "stage1.pt")
    fm_v2, _ = load_checkpoint(out / "fm_v2.pt")
    matched, meta = load_checkpoint(out / "base_matched.pt")
    shipped_base, _ = load_checkpoint(shipped_checkpoint("base"))
    # Grounding alone never reads the global feature: base.pt's and stage 1's pool stay as initialised.
    assert not shipped_base.encoder.pool_query.any() and not stage1.encoder.pool_query.any()
    first = stage1.encoder.state_dict()
    for model in (matched, fm_v2):
        state = model.encoder.state_dict()
        for name, tensor in state.items():
            if name.startswith(TRUNK):
                assert torch.equal(tensor, first[name]), name  # frozen in stage 2: A and B share the trunk
            elif not name.endswith("num_batches_tracked"):
                assert not torch.equal(tensor, first[name]), name  # every layer the policy reads trained
        assert model.encoder.pool_query.any()
    # Saved as a plain base model: the regression layer is not in the checkpoint.
    payload = torch.load(out / "base_matched.pt", weights_only=False)
    assert payload["config"]["head"] == "base" and matched.cfg.head == "base"
    assert set(payload["state_dict"]) == set(ForecasterModel(ForecasterConfig(head="base")).state_dict())
    assert "pool" in meta["objective"]


# --- the policy on the protocol's encoders -----------------------------------------------------------------
def test_variants_take_the_protocol_encoder_of_their_role(pretrained):
    _, out = pretrained
    protocol = load_protocol()
    for variant in VARIANTS:
        cfg = PolicyConfig.for_variant(variant, encoders_dir=str(out))
        assert cfg.encoder_init == protocol.variants[variant].encoder
        assert PolicyConfig.for_variant(variant).encoder_init == VARIANTS[variant]["encoder_init"]  # unchanged
    assert set(PROTOCOL_ENCODERS.values()) == {"fm_v2", "base_matched"}
    with pytest.raises(PolicyError, match="encoders_dir"):
        build_encoder("fm_v2")
    with pytest.raises(PolicyError, match="no protocol encoder"):
        build_encoder("base_matched", encoders_dir=out / "elsewhere")
    encoder = build_encoder("base_matched", encoders_dir=out)
    saved = load_checkpoint(out / "base_matched.pt")[0].encoder.state_dict()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in encoder.state_dict().items())


def test_shipped_variants_keep_their_hashes():
    """Values from before the protocol encoders existed: adding encoders_dir changed no A-D checkpoint's hash."""
    train_cfg = TrainConfig(steps=(5, 10), seed=1, state_noise_m=0.01)
    hashes = {v: train_hash(run_identity(PolicyConfig.for_variant(v, encoder_seed=1, footprint=v == "B"), train_cfg,
                                         "tk", "vk"), "encoder", 10) for v in "ABCD"}
    assert hashes == {"A": "0c85d6c0b854a5d8", "B": "b570091e99a171be", "C": "bf1c97711ec570b5",
                      "D": "8450e3ac3dbce5ae"}
    finetuned = run_identity(PolicyConfig.for_variant("A", finetune="post_trunk"), TrainConfig(), "tk", "vk")
    assert train_hash(finetuned, "encoder", 10) == "19ea2f454dfef247"
    assert encoding_paths(PolicyConfig.for_variant("B"), "k", "/c")[0].name == "enc-k-base-l2.npy"


def test_an_experiment_on_a_protocol_encoder_is_hashed_by_its_bytes(pretrained, tmp_path):
    _, made = pretrained
    encoders = tmp_path / "encoders"  # a copy: this test rewrites a file
    encoders.mkdir()
    for name in PROTOCOL_ENCODERS.values():
        shutil.copy(made / f"{name}.pt", encoders / f"{name}.pt")
    cfg = ExperimentConfig(variants=("B",), steps=(5,), episodes_per_family=1, families=("push",),
                           train_episodes_per_family=1, val_episodes_per_family=1, batch_size=8, eval_every=5,
                           max_samples=8, demo_cache=str(tmp_path / "demos"), encoders_dir=str(encoders))
    result = run_experiment(cfg, tmp_path / "exp", progress=False)
    assert [(r["variant"], r["step"], r["n"]) for r in result.summary["rows"]] == [("B", 5, 1)]
    stored = json.loads((tmp_path / "exp" / "runs" / "B-s0" / "train.json").read_text())["config_hash"]["5"]
    policy = PolicyConfig.for_variant("B", encoders_dir=str(encoders))
    digest = encoder_digest("base_matched", encoders)
    assert digest.startswith("base_matched:") and digest != encoder_digest("base")
    assert list((tmp_path / "exp" / "encodings").glob(f"enc-*-base_matched-{digest[13:25]}-l2.npy"))
    run_config = json.loads((tmp_path / "exp" / "runs" / "B-s0" / "run_config.json").read_text())
    assert "encoders_dir" not in run_config["policy"]  # a place: moving the folder keeps every hash
    assert run_config["policy"]["encoder_sha256"].startswith(digest[13:])
    assert stored == train_hash(run_identity(policy, TrainConfig(steps=(5,), batch_size=8, eval_every=5),
                                             run_config["train_demos"], run_config["val_demos"]), digest, 5)

    # The same name with other bytes (a pretraining made again): another hash, so the finished run is refused.
    model, meta = load_checkpoint(encoders / "base_matched.pt")
    with torch.no_grad():
        model.encoder.pool_query.add_(0.01)
    save_checkpoint(model, encoders / "base_matched.pt", meta)
    assert encoder_digest("base_matched", encoders) != digest
    with pytest.raises(PolicyError, match="another encoder"):
        run_experiment(cfg, tmp_path / "exp", progress=False, resume=True)


def test_c_on_protocol_encoders_reads_fm_v2_forecasts_in_its_demonstrations_and_when_acting(pretrained, tmp_path):
    """Variant C's forecast input comes from the FM model whose encoder it starts from: fm_v2 under the protocol
    (recorded into its demonstrations, read again when it acts), fm.pt otherwise."""
    from molmomotion_policies.agent import PolicyAgent
    from molmomotion_policies.demos import DemoConfig, Demos
    from molmomotion_policies.model import forecaster_checkpoint

    _, made = pretrained
    assert forecaster_checkpoint(PolicyConfig.for_variant("C")) is None  # the shipped fm.pt
    assert forecaster_checkpoint(PolicyConfig.for_variant("C", encoders_dir=str(made))) == str(made / "fm_v2.pt")
    with pytest.raises(PolicyError, match="not one"):
        forecaster_checkpoint(PolicyConfig.for_variant("B", encoders_dir=str(made)))
    tiny = dict(variants=("C",), steps=(5,), episodes_per_family=1, families=("push",), train_episodes_per_family=1,
                val_episodes_per_family=1, batch_size=8, eval_every=5, max_samples=8)
    shipped = run_experiment(ExperimentConfig(**tiny, demo_cache=str(tmp_path / "demos")), tmp_path / "shipped",
                             progress=False)
    protocol = run_experiment(ExperimentConfig(**tiny, demo_cache=str(tmp_path / "demos"), encoders_dir=str(made)),
                              tmp_path / "protocol", progress=False)
    assert shipped.summary["rows"][0]["n"] == protocol.summary["rows"][0]["n"] == 1
    recordings = {}
    for forecaster in (None, str(made / "fm_v2.pt")):
        config = DemoConfig("train", 1, families=("push",), frames_every=2, forecaster=forecaster)
        (path,) = (tmp_path / "demos").glob(f"*{config.key()}*.npz")
        recordings[forecaster] = Demos.load(path)
    shipped_demos, protocol_demos = recordings.values()
    assert np.array_equal(shipped_demos.rgb, protocol_demos.rgb)  # the same scenes ...
    assert not np.allclose(shipped_demos.forecast_world_m, protocol_demos.forecast_world_m)  # ... other forecasts
    agent = PolicyAgent(tmp_path / "protocol" / "runs" / "C-s0" / "step-000005.pt")
    assert agent._pipeline.forecaster.backend.checkpoint == str(made / "fm_v2.pt")
