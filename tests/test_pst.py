"""Progressive Staged Training: stage transitions, frozen-prefix execution, compiled stage switches, ACM."""
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import write_noise_dataset

from pst_fast.defenses.probe import fisher_ratio
from pst_fast.defenses.pst import PSTParams, StagedTraining, schedule
from pst_fast.options import parse_kv_args
from pst_fast.errors import PstFastError
from pst_fast.models import create_model
from pst_fast.training import Hooks, TrainConfig, TrainState, train
from pst_fast.training.optim import block_param_groups, make_optimizer


@pytest.fixture(scope="module")
def patch_poison(tmp_path_factory):
    """A class-wise patch poison: noise images whose only class signal is a 4x4 corner patch of class colour."""
    return write_noise_dataset(tmp_path_factory.mktemp("patch"), 256, 64, patch=True)


def run(root, tmp_path, name, **kw):
    base = dict(data=str(root), model="fastnet-small", epochs=2, batch_size=32, quiet=True, warmup_epochs=0.5, out=str(tmp_path / name))
    return train(**(base | kw))


def test_fisher_ratio_extremes():
    y = torch.arange(40) % 4
    clustered = F.one_hot(y, 4).double() * 10 + 0.001 * torch.randn(40, 4, dtype=torch.float64)
    assert fisher_ratio(clustered, y, 4) > 0.99
    assert fisher_ratio(torch.randn(4000, 8), torch.arange(4000) % 4, 4) < 0.01
    assert fisher_ratio(torch.ones(10, 3), torch.arange(10) % 2, 2) == 0.0


def test_trigger_freezes_rolls_back_and_thaws(patch_poison, tmp_path):
    s = run(patch_poison, tmp_path, "pst", defense="pst", epochs=3,
            defense_args="trigger=train-acc:0.0,check_every=2,thaw_epoch=2,reinit=head")
    state = json.loads((tmp_path / "pst" / "pst.json").read_text())
    hold, thaw = state["events"]
    assert hold["stage"] == "hold" and hold["step"] == 2 and "freeze stem+s1+s2" in hold["actions"]
    assert any(a.startswith("rollback") for a in hold["actions"]) and "reinit head" in hold["actions"]
    assert thaw["stage"] == "thaw" and thaw["epoch"] >= 2.0
    assert (tmp_path / "pst" / "pst.png").stat().st_size > 0 and 0 <= s["final_test_acc"] <= 1
    lines = [json.loads(l) for l in (tmp_path / "pst" / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["pst_stage"] == "hold" and lines[-1]["pst_stage"] == "thaw" and "acm1/s1" in lines[0]["pst"]


def test_rollback_zero_restores_initial_shallow_blocks(patch_poison, tmp_path):
    run(patch_poison, tmp_path, "init", defense="pst", defense_args="trigger=train-acc:0.0,check_every=2,rollback=0")
    weights = torch.load(tmp_path / "init" / "model.pt", weights_only=True)
    torch.manual_seed(0)
    fresh = create_model("fastnet-small", num_classes=4).state_dict()
    held = [k for k in weights if k.startswith(("blocks.stem.", "blocks.s1.", "blocks.s2."))]
    assert held and all(torch.equal(weights[k], fresh[k]) for k in held)
    events = json.loads((tmp_path / "init" / "pst.json").read_text())["events"]
    assert "rollback stem+s1+s2 to epoch 0.00" in events[0]["actions"]


@pytest.mark.parametrize("crash_epoch", [0, 1])  # killed in the learn stage (before the trigger) / in the hold stage
def test_resumed_run_equals_uninterrupted(patch_poison, tmp_path, crash_epoch):
    args = dict(defense="pst", epochs=3, defense_args="trigger=train-acc:0.3,check_every=3,window=3")
    run(patch_poison, tmp_path, "ref", **args)

    def crash(state):
        if state.epoch == crash_epoch + 1:  # after PST wrote its state for this epoch, before the checkpoint
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(patch_poison, tmp_path, "killed", hooks=Hooks(on_epoch_end=[crash]), **args)
    run(patch_poison, tmp_path, "killed", **args)
    ref, killed = (json.loads((tmp_path / d / "pst.json").read_text()) for d in ("ref", "killed"))
    assert ref["events"] and killed["events"] == ref["events"] and killed["trace"] == ref["trace"]
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("ref", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_blocks_do_not_change_while_held(patch_poison, tmp_path):
    run(patch_poison, tmp_path, "held", defense="pst", defense_args="trigger=train-acc:0.0,check_every=2,rollback=1")
    weights = torch.load(tmp_path / "held" / "model.pt", weights_only=True)
    state = json.loads((tmp_path / "held" / "pst.json").read_text())
    assert state["events"][0]["step"] == 2
    # replay: the same seed and schedule, stopped right after the freeze, must hold the same shallow weights
    run(patch_poison, tmp_path, "short", defense="pst", defense_args="trigger=train-acc:0.0,check_every=2,rollback=1", max_steps=3)
    early = torch.load(tmp_path / "short" / "model.pt", weights_only=True)
    for k in weights:
        if k.startswith(("blocks.stem.", "blocks.s1.", "blocks.s2.")):
            assert torch.equal(weights[k], early[k]), k
    assert not all(torch.equal(weights[k], early[k]) for k in weights if k.startswith("blocks.s3."))


def test_silent_trigger_is_exactly_standard_training(patch_poison, tmp_path):
    a = run(patch_poison, tmp_path, "std")
    b = run(patch_poison, tmp_path, "quiet", defense="pst", defense_args="trigger=train-acc:2.0,check_every=3")
    assert a["final_test_acc"] == b["final_test_acc"]
    wa, wb = (torch.load(tmp_path / n / "model.pt", weights_only=True) for n in ("std", "quiet"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_run_shorter_than_one_detector_pass_finishes(patch_poison, tmp_path):
    """max_steps below check_every: no detector pass, so no trace to plot — the run still ends normally."""
    s = run(patch_poison, tmp_path, "tiny", defense="pst", defense_args="check_every=20", epochs=1, max_steps=3)
    assert 0.0 <= s["final_test_acc"] <= 1.0 and json.loads((tmp_path / "tiny" / "pst.json").read_text())["trace"] == []


@pytest.mark.parametrize("compiled", [False, True])
def test_prefix_gradients_match_full_backward(compiled):
    """After a stage switch the trainable blocks get exactly the gradients of a full backward (eager reference)."""
    torch.manual_seed(0)
    cfg = TrainConfig(data="unused", model="fastnet-small", compile=compiled, defense="pst")
    model = create_model("fastnet-small")
    ref = create_model("fastnet-small")
    ref.load_state_dict(model.state_dict())
    opt = make_optimizer(block_param_groups(model, cfg), cfg)
    st = StagedTraining(cfg, PSTParams(augment="none"))  # the gradient mechanics, on untransformed batches
    st.stages = schedule(st.p, list(model.blocks.keys()))
    state = TrainState(model=model, optimizer=opt, cfg=cfg)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    fwd = torch.compile(model) if compiled else model
    model.train(), ref.train()
    for stage in (0, 1, 0, 1):  # learn -> hold -> back: every switch must use the right graph
        st.index = stage
        model.train()  # as the loop does each epoch; the loss hook puts frozen blocks back in eval mode
        for name in model.blocks.keys():
            (opt.freeze if name in st.stage.frozen else opt.unfreeze)(name)
            ref.blocks[name].train(name not in st.stage.frozen)
            for p in ref.blocks[name].parameters():
                p.requires_grad_(name not in st.stage.frozen)
        opt.zero_grad(set_to_none=True)
        st.loss(fwd, x, y, state).backward()
        ref.zero_grad(set_to_none=True)
        F.cross_entropy(ref(x).float(), y, label_smoothing=cfg.label_smoothing).backward()
        for (n, p), q in zip(model.named_parameters(), ref.parameters()):
            if any(n.startswith(f"blocks.{b}.") for b in st.stage.frozen):
                assert p.grad is None, n
            else:
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.parametrize("args, match", [
    ("trigger=nonsense", "expected DETECTOR:THRESHOLD"),
    ("colour=red", "expected key=value with key one of"),
    ("check_every=often", "expected a int"),
    ("shallow=stem+head", "expected '\\+'-separated blocks"),
    ("reinit=all", "expected reinit none\\|head\\|deep"),
    ("check_every=0", "expected check_every ≥ 1"),
    ("rollback=1.5", "rollback in \\[0, 1\\]"),
])
def test_bad_defense_args(args, match, patch_poison, tmp_path):
    with pytest.raises(PstFastError, match=match):
        run(patch_poison, tmp_path, "bad", defense="pst", defense_args=args, max_steps=1)


def test_parse_args_types():
    p = parse_kv_args("thaw_epoch=3.5, rollback=0.5,shallow=stem+s1", PSTParams)
    assert p.thaw_epoch == 3.5 and p.rollback == 0.5 and p.shallow == "stem+s1"


def test_defenses_cli_lists_pst_parameters(capsys):
    from pst_fast.cli import main

    main(["defenses"])
    out = capsys.readouterr().out
    assert "pst " in out and "trigger=train-acc:0.6" in out and "standard " in out


def test_args_for_a_defense_without_parameters(patch_poison, tmp_path):
    with pytest.raises(PstFastError, match="takes no arguments"):
        run(patch_poison, tmp_path, "bad", defense="standard", defense_args="x=1", max_steps=1)
