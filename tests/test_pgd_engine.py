"""The PGD engine: schedules, random starts, EOT, the frozen surrogate view, and that descent descends."""
import pytest
import torch
import torch.nn.functional as F

from pst_fast.data import Normalization
from pst_fast.models import create_model
from pst_fast.pgd import PGD, Surrogate, cycle_batches, perturb, random_crop_flip


@pytest.fixture(scope="module")
def surrogate():
    torch.manual_seed(0)
    return Surrogate(create_model("fastnet-small"), Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), "cpu")


def test_multistep_schedule():
    pgd = PGD(steps=8, step_size=1.0, eps=1.0, schedule="multistep")
    assert [pgd.step_at(i) for i in range(8)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01, 0.01, 0.001])
    assert PGD(steps=8, step_size=0.5, eps=1.0).step_at(7) == 0.5


def test_frozen_view_tracks_the_weights(surrogate):
    x = torch.rand(6, 3, 32, 32)
    surrogate.model.eval()
    frozen = surrogate.frozen()
    torch.testing.assert_close(frozen(x), surrogate(x), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        for p in surrogate.model.parameters():
            p.add_(0.01)
    assert surrogate.frozen() is frozen  # same module, new weights copied in
    torch.testing.assert_close(frozen(x), surrogate(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("direction", [-1, 1])
@pytest.mark.parametrize("augment", [False, True])
def test_perturb_moves_the_loss_and_keeps_the_ball(surrogate, direction, augment):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 32, 32, generator=g)
    x[:2] = 0.0
    x[2:4] = 1.0
    y = torch.randint(0, 10, (16,), generator=g)
    frozen = surrogate.frozen()
    pgd = PGD(steps=5, step_size=2 / 255, eps=8 / 255, direction=direction, random_start=True, augment=augment, eot=2)
    d = perturb(frozen, x, torch.zeros_like(x), y, pgd, g)
    assert d.abs().max() <= 8 / 255 + 1e-6 and (x + d).min() >= 0 and (x + d).max() <= 1
    with torch.no_grad():
        before, after = F.cross_entropy(frozen(x), y), F.cross_entropy(frozen(x + d), y)
    assert (after - before) * direction > 0


def test_random_crop_flip_is_a_permutation_with_zero_padding():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 32, 32) + 1.0  # strictly positive: zeros can only come from the padding
    out = random_crop_flip(x, 4, g)
    for i in range(8):
        kept = out[i][out[i] > 0]
        assert torch.isin(kept, x[i]).all()


def test_cycle_batches_cover_every_index_once_per_pass():
    it = cycle_batches(10, 3, torch.Generator().manual_seed(0), "cpu")
    first = torch.cat([next(it) for _ in range(3)])
    assert len(set(first.tolist())) == 9
