"""Freeze-aware optimizers: a frozen group is untouched (params, state, grads); the rest steps exactly as torch's."""
import copy

import pytest
import torch

from pst_fast.errors import PstFastError
from pst_fast.models import create_model
from pst_fast.training.freeze import FreezeAwareAdamW, FreezeAwareSGD
from pst_fast.training.optim import block_param_groups


def make(cls, model):
    groups = block_param_groups(model, None)
    if cls is FreezeAwareSGD:
        return cls(groups, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return cls(groups, lr=1e-3, weight_decay=0.05)


def train_steps(model, opt, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("cls, ref", [(FreezeAwareSGD, torch.optim.SGD), (FreezeAwareAdamW, torch.optim.AdamW)])
def test_frozen_groups_are_skipped_and_the_rest_matches_torch(cls, ref):
    torch.manual_seed(0)
    model = create_model("fastnet-small")
    twin = copy.deepcopy(model)
    opt = make(cls, model)
    train_steps(model, opt, 2)  # momentum / Adam state exists before freezing
    state_before = {k: copy.deepcopy(v) for k, v in opt.state.items()}
    stem, s1 = [p.detach().clone() for p in model.blocks["stem"].parameters()], [p.detach().clone() for p in model.blocks["s1"].parameters()]
    opt.freeze("stem")
    opt.freeze("s1")
    assert opt.frozen == ["stem", "s1"]
    # the twin: same history, then plain torch on the unfrozen blocks only
    twin_opt = make(cls, twin)
    train_steps(twin, twin_opt, 2)
    for name in ("stem", "s1"):
        for p in twin.blocks[name].parameters():
            p.requires_grad_(False)
    twin_opt.param_groups = [g for g in twin_opt.param_groups if g["name"] not in ("stem", "s1")]
    train_steps(model, opt, 3, seed=1)
    train_steps(twin, twin_opt, 3, seed=1)
    for p, q in zip(stem + s1, list(model.blocks["stem"].parameters()) + list(model.blocks["s1"].parameters())):
        assert torch.equal(p, q) and q.grad is None and not q.requires_grad
        assert all(torch.equal(a, b) for a, b in zip(state_before[q].values(), opt.state[q].values()))
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    opt.unfreeze("s1", lr_scale=0.1)
    assert opt.frozen == ["stem"] and opt._group("s1")["lr_scale"] == 0.1
    assert all(p.requires_grad for p in model.blocks["s1"].parameters())
    train_steps(model, opt, 1, seed=2)
    assert not all(torch.equal(p, q) for p, q in zip(s1, model.blocks["s1"].parameters()))


def test_unknown_group_is_a_clear_error():
    opt = make(FreezeAwareSGD, create_model("fastnet-small"))
    with pytest.raises(PstFastError, match="no parameter group named 's9'"):
        opt.freeze("s9")


def test_state_dict_round_trip_keeps_frozen_flags():
    model = create_model("fastnet-small")
    opt = make(FreezeAwareSGD, model)
    train_steps(model, opt, 1)
    opt.freeze("stem")
    other = make(FreezeAwareSGD, model)
    other.load_state_dict(opt.state_dict())
    assert other._group("stem")["frozen"] is True


# ---------------------------------------------------------------- any nn.Module: from_blocks and named groups


class TinyNet(torch.nn.Module):
    """Not from pst_fast's registry: torchvision-style attribute names, no ``blocks``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8)
        self.layer1 = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.layer2 = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(16, 10)
        self.scale = torch.nn.Parameter(torch.ones(()))  # in no block: goes to "rest"

    def forward(self, x):
        x = self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((2, 3))) * self.scale


def blocks_of(m):
    return {"stem": [m.conv1, m.bn1], "layer1": m.layer1, "layer2": m.layer2, "fc": m.fc}


@pytest.mark.parametrize("cls, ref, kw", [(FreezeAwareSGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)),
                                          (FreezeAwareAdamW, torch.optim.AdamW, dict(lr=1e-3, weight_decay=0.05))])
def test_from_blocks_on_any_module_freezes_exactly(cls, ref, kw):
    torch.manual_seed(0)
    model = TinyNet()
    twin = copy.deepcopy(model)
    opt = cls.from_blocks(blocks_of(model), model=model, **kw)
    assert [g["name"] for g in opt.param_groups] == ["stem", "layer1", "layer2", "fc", "rest"]
    assert opt.param_groups[0]["params"] == [model.conv1.weight, model.bn1.weight, model.bn1.bias]
    assert opt.param_groups[-1]["params"] == [model.scale]
    twin_opt = ref(twin.parameters(), **kw)  # plain torch, one group
    train_steps(model, opt, 2)
    train_steps(twin, twin_opt, 2)
    frozen = [p.detach().clone() for p in model.layer1.parameters()]
    layer2 = model.layer2[0].weight.detach().clone()
    state = {k: copy.deepcopy(v) for k, v in opt.state.items()}
    opt.freeze("layer1")
    for p in twin.layer1.parameters():  # the twin: plain torch without layer1's parameters
        p.requires_grad_(False)
    keep = {id(p) for p in twin.layer1.parameters()}
    twin_opt.param_groups[0]["params"] = [p for p in twin_opt.param_groups[0]["params"] if id(p) not in keep]
    train_steps(model, opt, 3, seed=1)
    train_steps(twin, twin_opt, 3, seed=1)
    for before, p in zip(frozen, model.layer1.parameters()):
        assert torch.equal(before, p) and p.grad is None and not p.requires_grad
        assert all(torch.equal(a, b) for a, b in zip(state[p].values(), opt.state[p].values())), "frozen state touched"
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert not torch.equal(layer2, model.layer2[0].weight), "the unfrozen blocks train on"
    opt.unfreeze("layer1")
    train_steps(model, opt, 1, seed=2)
    assert not all(torch.equal(a, b) for a, b in zip(frozen, model.layer1.parameters()))


def test_from_blocks_names_and_refusals():
    m = TinyNet()
    opt = FreezeAwareSGD.from_blocks([[m.conv1, m.bn1], m.layer1, torch.nn.ReLU(), m.fc], lr=0.1)
    assert [g["name"] for g in opt.param_groups] == ["0", "1", "3"], "numbered; blocks without parameters are left out"
    tied = TinyNet()
    tied.layer2[0].weight = tied.layer1[0].weight = torch.nn.Parameter(torch.zeros(8, 8, 3, 3))
    cases = [
        (lambda: FreezeAwareSGD.from_blocks({"a": m.layer1, "b": m.layer1}, lr=0.1), "listed in group 'b' and in group 'a'"),
        (lambda: FreezeAwareSGD.from_blocks({"a": [m.fc, m.fc]}, lr=0.1), "listed twice"),
        (lambda: FreezeAwareSGD.from_blocks({"x": tied.layer1, "y": tied.layer2}, lr=0.1), "in group 'y' and in group 'x'"),
        (lambda: FreezeAwareSGD.from_blocks({"rest": m.fc}, model=m, lr=0.1), "two parameter groups are named 'rest'"),
        (lambda: FreezeAwareAdamW([{"params": m.fc.parameters(), "name": "fc"}, {"params": [m.fc.bias], "name": "b"}]),
         "in group 'b' and in group 'fc'"),
        (lambda: FreezeAwareSGD(m.parameters(), lr=0.1), "parameter group 0 has no 'name'"),
        (lambda: FreezeAwareSGD([{"params": m.fc.parameters(), "name": "fc"}, {"params": m.layer1.parameters()}], lr=0.1),
         "parameter group 1 has no 'name'"),
    ]
    for make_opt, match in cases:
        with pytest.raises(PstFastError, match=match) as e:
            make_opt()
        assert "\n" not in str(e.value)
    groups = [{"params": m.fc.parameters(), "name": "head", "lr": 0.01}, {"params": m.layer2.parameters(), "name": "body"}]
    opt = FreezeAwareSGD(groups, lr=0.1)  # ordinary groups with a name are fine
    opt.freeze("head")
    assert opt.frozen == ["head"] and opt._group("head")["lr"] == 0.01 and not m.fc.weight.requires_grad
