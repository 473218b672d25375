"""Progressive Staged Training: the shortcut detector, progressive holds, rollback, resume, frozen-prefix execution."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import write_noise_dataset
from torch import nn

from pst_fast.data import Normalization
from pst_fast.data.format import write_dataset
from pst_fast.defenses.probe import Probe, fisher_ratio
from pst_fast.defenses.pst import PSTJpegParams, PSTParams, StagedTraining
from pst_fast.errors import PstFastError
from pst_fast.models import create_model
from pst_fast.models.blocks import BlockModel
from pst_fast.options import parse_kv_args
from pst_fast.run import train
from pst_fast.training import Hooks, TrainConfig, TrainState
from pst_fast.training.optim import block_param_groups, make_optimizer

ALWAYS = "detector=train-acc,threshold=0,patience=1,check_every=2"  # every pass detects: the schedule's mechanics without a real trap


@pytest.fixture(scope="module")
def patch_poison(tmp_path_factory):
    """A class-wise patch poison: noise images whose only class signal is a 4x4 corner patch of class colour."""
    return write_noise_dataset(tmp_path_factory.mktemp("patch"), 256, 64, patch=True)


def run(root, tmp_path, name, **kw):
    base = dict(data=str(root), model="fastnet-small", epochs=2, batch_size=32, quiet=True, warmup_epochs=0.5, out=str(tmp_path / name))
    return train(**(base | kw))


def weights(tmp_path, name):
    return torch.load(tmp_path / name / "model.pt", weights_only=True)


def events(tmp_path, name):
    return json.loads((tmp_path / name / "pst.json").read_text())["events"]


def test_fisher_ratio_extremes():
    y = torch.arange(40) % 4
    clustered = F.one_hot(y, 4).double() * 10 + 0.001 * torch.randn(40, 4, dtype=torch.float64)
    assert fisher_ratio(clustered, y, 4) > 0.99
    assert fisher_ratio(torch.randn(4000, 8), torch.arange(4000) % 4, 4) < 0.01
    assert fisher_ratio(torch.ones(10, 3), torch.arange(10) % 2, 2) == 0.0


class HueReader(BlockModel):
    """Reads the class from the mean red-minus-green of the input: right on raw and blurred or JPEG'd tints, blind under grayscale."""

    def __init__(self):
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
        with torch.no_grad():
            head[2].weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]))
            head[2].bias.zero_()
        super().__init__([("stem", nn.Identity()), ("s1", nn.Identity()), ("head", head)])


def test_shortcut_is_the_quorum_th_largest_view_gap(tmp_path):
    """Red vs green tints of equal luminance: grayscale erases the class, blur and JPEG keep it — one view of three."""
    n = 40
    y = np.arange(n) % 2
    x = np.zeros((n, 16, 16, 3), np.uint8)
    x[y == 0] = (150, 100, 120)
    x[y == 1] = (100, 150, 120)
    ds = write_dataset(tmp_path / "tints", x, y.astype(np.int64), {"name": "t", "split": "train", "classes": ["r", "g"], "source": "t"})
    kw = dict(size=n, seed=0, norm=Normalization.identity(3), device="cpu", channels_last=False)
    one, two = Probe(ds, quorum=1, **kw).scores(HueReader()), Probe(ds, quorum=2, **kw).scores(HueReader())
    assert one["acc"] == 1.0 and one["acc/blur"] == 1.0 and one["acc/jpeg"] == 1.0 and one["acc/gray"] == 0.5
    assert one["shortcut"] == 0.5 and two["shortcut"] == 0.0  # one view's loss is not a shortcut; the default quorum is 2


def test_holds_progress_block_by_block_and_roll_back(patch_poison, tmp_path):
    run(patch_poison, tmp_path, "one", defense="pst", defense_args=ALWAYS, epochs=1)
    ev = events(tmp_path, "one")
    assert [(e["step"], e["hold"], e["stage"]) for e in ev] == [(2, ["stem"], "hold-1"), (4, ["s1"], "hold-2"), (6, ["s2"], "hold-3")]
    assert ev[0]["actions"] == ["rollback stem to step 0 (epoch 0.00)", "freeze stem"]  # the default: back to initialization
    torch.manual_seed(0)
    fresh = create_model("fastnet-small", num_classes=4).state_dict()
    w = weights(tmp_path, "one")
    held = [k for k in w if k.startswith(("blocks.stem.", "blocks.s1.", "blocks.s2."))]
    assert held and all(torch.equal(w[k], fresh[k]) for k in held)
    assert not all(torch.equal(w[k], fresh[k]) for k in w if k.startswith("blocks.s3."))


def test_per_stage_all_and_depth(patch_poison, tmp_path):
    run(patch_poison, tmp_path, "all", defense="pst", defense_args=ALWAYS + ",per_stage=all,depth=2", epochs=1)
    assert [e["hold"] for e in events(tmp_path, "all")] == [["stem", "s1"]]


class ScriptedProbe:
    """Detector values in order, one per pass."""

    def __init__(self, values):
        self.values = list(values)

    def scores(self, model):
        return {"shortcut": self.values.pop(0)}


def test_rollback_to_the_last_calm_pass():
    """Passes below half the threshold are calm; the held block restarts from the last of them, others keep training."""
    torch.manual_seed(0)
    cfg = TrainConfig(data="unused", model="fastnet-small", defense="pst")
    model = create_model("fastnet-small")
    opt = make_optimizer(block_param_groups(model, cfg), cfg)
    st = StagedTraining(cfg, parse_kv_args("threshold=0.4,patience=2,check_every=1,rollback=calm", PSTParams))
    st.candidates, st.probe = ["stem", "s1", "s2"], ScriptedProbe([0.1, 0.1, 0.3, 0.5, 0.6, 0.1, 0.5, 0.5])
    state = TrainState(model=model, optimizer=opt, cfg=cfg)
    at, after = {}, {}
    for step in range(1, 9):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)  # a visible change per step
        at[step] = {k: v.clone() for k, v in model.state_dict().items()}
        state.step = step
        st.on_step(state)
        after[step] = {k: v.clone() for k, v in model.state_dict().items()}
    first, second = st.events
    assert (first["step"], first["hold"]) == (5, ["stem"]) and first["actions"][0].startswith("rollback stem to step 2 ")
    assert (second["step"], second["hold"]) == (8, ["s1"]) and second["actions"][0].startswith("rollback s1 to step 6 ")
    stem, s1 = "blocks.stem.0.weight", "blocks.s1.0.0.weight"
    assert torch.equal(after[5][stem], at[2][stem]) and torch.equal(after[8][s1], at[6][s1])
    assert torch.equal(after[5][s1], at[5][s1])  # not held yet: untouched by the first rollback
    assert opt.frozen == ["stem", "s1"]


def test_slowed_blocks_keep_training_at_a_fraction_of_the_rate(patch_poison, tmp_path):
    run(patch_poison, tmp_path, "slow", defense="pst", defense_args=ALWAYS + ",per_stage=all,slow=0.1,rollback=now", epochs=1)
    run(patch_poison, tmp_path, "short", defense="pst", defense_args=ALWAYS + ",per_stage=all,slow=0.1,rollback=now", epochs=1, max_steps=3)
    ev = events(tmp_path, "slow")
    assert ev[0]["actions"] == ["lr ×0.1 stem+s1+s2"]
    a, b = weights(tmp_path, "slow"), weights(tmp_path, "short")
    assert not torch.equal(a["blocks.stem.0.weight"], b["blocks.stem.0.weight"])  # still trained


@pytest.mark.parametrize("crash_epoch", [0, 1])  # killed in the learn stage / after the holds
def test_resumed_run_equals_uninterrupted(patch_poison, tmp_path, crash_epoch):
    args = dict(defense="pst", epochs=3, defense_args="detector=train-acc,threshold=0.3,patience=1,check_every=3")
    run(patch_poison, tmp_path, "ref", **args)

    def crash(state):
        if state.epoch == crash_epoch + 1:  # after PST wrote its state for this epoch, before the checkpoint
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(patch_poison, tmp_path, "killed", hooks=Hooks(on_epoch_end=[crash]), **args)
    run(patch_poison, tmp_path, "killed", **args)
    ref, killed = (json.loads((tmp_path / d / "pst.json").read_text()) for d in ("ref", "killed"))
    assert ref["events"] and killed["events"] == ref["events"] and killed["trace"] == ref["trace"]
    a, b = weights(tmp_path, "ref"), weights(tmp_path, "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_silent_detector_is_exactly_standard_training(patch_poison, tmp_path):
    a = run(patch_poison, tmp_path, "std")
    b = run(patch_poison, tmp_path, "quiet", defense="pst", defense_args="threshold=2.0,check_every=3")
    assert a["final_test_acc"] == b["final_test_acc"]
    wa, wb = weights(tmp_path, "std"), weights(tmp_path, "quiet")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not events(tmp_path, "quiet")


def test_pst_jpeg_holds_compresses_and_thaws(patch_poison, tmp_path):
    run(patch_poison, tmp_path, "jpeg", defense="pst-jpeg", defense_args=ALWAYS + ",thaw_epoch=2", epochs=3)
    hold, thaw = events(tmp_path, "jpeg")
    assert hold["hold"] == ["stem", "s1", "s2"] and "JPEG-10 every batch" in hold["actions"]
    assert thaw["stage"] == "thaw" and thaw["epoch"] >= 2.0
    assert json.loads((tmp_path / "jpeg" / "pst.json").read_text())["method"].startswith("pst-jpeg")
    assert (tmp_path / "jpeg" / "pst.png").stat().st_size > 0


def test_run_shorter_than_one_detector_pass_finishes(patch_poison, tmp_path):
    """max_steps below check_every: no detector pass, so no trace to plot — the run still ends normally."""
    s = run(patch_poison, tmp_path, "tiny", defense="pst", defense_args="check_every=20", epochs=1, max_steps=3)
    assert 0.0 <= s["final_test_acc"] <= 1.0 and json.loads((tmp_path / "tiny" / "pst.json").read_text())["trace"] == []


@pytest.mark.parametrize("compiled", [False, True])
def test_prefix_gradients_match_full_backward(compiled):
    """With a frozen prefix the trainable blocks get exactly the gradients of a full backward (eager reference)."""
    torch.manual_seed(0)
    cfg = TrainConfig(data="unused", model="fastnet-small", compile=compiled, defense="pst")
    model = create_model("fastnet-small")
    ref = create_model("fastnet-small")
    ref.load_state_dict(model.state_dict())
    opt = make_optimizer(block_param_groups(model, cfg), cfg)
    st = StagedTraining(cfg, PSTParams())
    st.probe = object()  # set up: the loss hook must not build a probe for this synthetic step
    state = TrainState(model=model, optimizer=opt, cfg=cfg)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    fwd = torch.compile(model) if compiled else model
    for held in ([], ["stem", "s1"], [], ["stem", "s1"]):  # every switch must use the right graph
        st.held = held
        model.train()  # as the loop does each epoch; the loss hook puts frozen blocks back in eval mode
        for name in model.blocks.keys():
            (opt.freeze if name in held else opt.unfreeze)(name)
            ref.blocks[name].train(name not in held)
            for p in ref.blocks[name].parameters():
                p.requires_grad_(name not in held)
        opt.zero_grad(set_to_none=True)
        st.loss(fwd, x, y, state).backward()
        ref.zero_grad(set_to_none=True)
        F.cross_entropy(ref(x).float(), y, label_smoothing=cfg.label_smoothing).backward()
        for (n, p), q in zip(model.named_parameters(), ref.parameters()):
            if any(n.startswith(f"blocks.{b}.") for b in held):
                assert p.grad is None, n
            else:
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=n)


def test_detector_window_is_counted_from_the_last_hold():
    """Passes run within ``window`` steps of the start or of the last hold; a detection after that holds nothing."""
    cfg = TrainConfig(data="unused", model="fastnet-small", defense="pst")
    model = create_model("fastnet-small")
    opt = make_optimizer(block_param_groups(model, cfg), cfg)
    st = StagedTraining(cfg, parse_kv_args("threshold=0.4,patience=1,check_every=1,window=3", PSTParams))
    st.candidates, st.probe = ["stem", "s1", "s2"], ScriptedProbe([0.1, 0.5, 0.1, 0.1, 0.1, 0.5])
    st.initial = st.calm = {"step": 0, "blocks": st._copy(model)}
    state = TrainState(model=model, optimizer=opt, cfg=cfg)
    for step in range(1, 12):
        state.step = step
        st.on_step(state)
    assert [e["step"] for e in st.events] == [2] and [t["step"] for t in st.trace] == [1, 2, 3, 4, 5]
    assert st.probe.values == [0.5]  # the pass at step 6 (> 2 + 3) never ran


@pytest.mark.parametrize("args, match", [
    ("detector=nonsense", "expected one of shortcut, acm4gap, train-acc"),
    ("colour=red", "--defense-args colour: unknown key; expected one of"),
    ("check_every=often", "--defense-args check_every='often': expected an integer"),
    ("views=gray+sepia", "expected '\\+'-separated views among"),
    ("quorum=4", "quorum=4: expected 1..3"),
    ("depth=4", "expected 1..3 or 0"),
    ("slow=1", "slow=1.0: expected a finite number >= 0 and < 1"),
    ("rollback=yesterday", "expected one of init, calm, now"),
])
def test_bad_defense_args(args, match, patch_poison, tmp_path):
    with pytest.raises(PstFastError, match=match):
        run(patch_poison, tmp_path, "bad", defense="pst", defense_args=args, max_steps=1)


def test_parse_args_types():
    p = parse_kv_args("threshold=0.25, per_stage=all,views=gray+jpeg", PSTParams)
    assert p.threshold == 0.25 and p.per_stage == "all" and p.views == "gray+jpeg"
    pst, hybrid = PSTParams(), PSTJpegParams()  # the defaults chosen on the validation split (docs/pst.md)
    assert (pst.per_stage, pst.rollback, pst.slow) == ("one", "init", 0.0) and (hybrid.per_stage, hybrid.rollback, hybrid.depth) == ("all", "calm", 3)


def test_defenses_cli_lists_the_variants(capsys):
    from pst_fast.cli import main

    main(["defenses"])
    out = capsys.readouterr().out
    assert "pst " in out and "pst-jpeg " in out and "detector=shortcut" in out and "standard " in out


def test_args_for_a_defense_without_parameters(patch_poison, tmp_path):
    with pytest.raises(PstFastError, match="takes no arguments"):
        run(patch_poison, tmp_path, "bad", defense="standard", defense_args="x=1", max_steps=1)


def test_dry_run_records_what_would_be_held_and_trains_as_standard(patch_poison, tmp_path):
    a = run(patch_poison, tmp_path, "std")
    b = run(patch_poison, tmp_path, "dry", defense="pst", defense_args=ALWAYS + ",dry_run=true")
    assert a["final_test_acc"] == b["final_test_acc"]
    ev = events(tmp_path, "dry")
    assert [e["actions"] for e in ev[:4]] == [["would hold stem"], ["would hold s1"], ["would hold s2"], ["would hold nothing more"]]
    assert all(e["stage"] == "dry-run" and e["hold"] == [] for e in ev)
