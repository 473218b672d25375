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
