"""augment_batch: the torch reference against a per-sample torchvision-style loop, and the C++ and Triton
paths against the reference on random shapes and boundary cases."""
import os
import random
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import run_in_triton_interpreter

from pst_fast.errors import PstFastError
from pst_fast.ops.augment import _check, augment_batch, augment_op, augment_reference, draw_crop_flip, normalization


def random_cases(n, seed=0, channels=(1, 3), max_side=12, padding="zero"):
    """(N, H, W, C, B, pad, mode, padding) tuples; mode is 'none' | 'sample' | 'class' (δ per sample or per class),
    padding 'zero' | 'reflect' (then pad < H, W)."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        H, W = rng.randint(1, max_side), rng.randint(1, max_side)
        pads = (0, 2, 4) if padding == "zero" else (0, 1, 2, 3, 4)
        pad = rng.choice([p for p in pads if p <= min(H, W) - (padding == "reflect")])
        cases.append((rng.randint(1, 9), H, W, channels[i % len(channels)], rng.randint(1, 13), pad, ("none", "sample", "class")[i % 3],
                      padding))
    return cases


REFLECT = random_cases(12, seed=1, padding="reflect") + [
    (16, 32, 32, 3, 33, 2, "sample", "reflect"),  # airbench's translations
    (5, 5, 7, 4, 9, 4, "class", "reflect"),       # pad = H - 1: mirrored rows reach the far edge
]
CASES = random_cases(24) + [
    (16, 32, 32, 3, 33, 4, "sample", "zero"),  # CIFAR-shaped
    (5, 6, 7, 4, 9, 2, "class", "zero"),       # the generic-C code path of the C++ kernel
    (3, 4, 4, 3, 6, 4, "sample", "zero"),      # pad == H: whole crops can be padding
    (1, 5, 3, 1, 1, 2, "none", "zero"),        # N = B = 1
] + REFLECT


def make_inputs(N, H, W, C, B, pad, mode, padding="zero", seed=0, classes=4):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (N, H, W, C), generator=g, dtype=torch.uint8)
    idx = torch.randint(0, N, (B,), generator=g)
    if mode == "none":
        delta = rows = None
    else:
        M = N if mode == "sample" else classes
        delta = torch.randint(-128, 128, (M, H, W, C), generator=g, dtype=torch.int8)  # pushes past 0 and 255
        rows = idx if mode == "sample" else torch.randint(0, classes, (N,), generator=g)[idx]
    shifts, flips = draw_crop_flip(B, pad, True, g, "cpu")
    scale, bias = normalization(torch.rand(C, generator=g).tolist(), (0.1 + torch.rand(C, generator=g)).tolist())
    return images, idx, delta, rows, shifts, flips, pad, padding == "reflect", scale, bias


def per_sample(images, idx, delta, rows, shifts, flips, pad, reflect, scale, bias):
    """torchvision order, one sample at a time: (+δ, clamp), zero- or reflect-pad, crop, flip the crop, normalize."""
    out = []
    for b in range(len(idx)):
        v = images[idx[b]].int()
        if delta is not None:
            v = (v + delta[rows[b]]).clamp(0, 255)
        v = F.pad(v.permute(2, 0, 1).float(), (pad,) * 4, mode="reflect" if reflect else "constant")
        dy, dx = shifts[b].tolist()
        v = v[:, dy : dy + images.shape[1], dx : dx + images.shape[2]]
        v = v.flip(2) if flips[b] else v
        out.append(v.float() * scale[:, None, None] + bias[:, None, None])
    return torch.stack(out)


def run(monkeypatch, backend_name, args, out_dtype, cl):
    monkeypatch.setenv("PST_FAST_BACKEND", backend_name)
    return augment_op(*args, out_dtype, cl)


@pytest.mark.parametrize("case", CASES[:8] + CASES[24:28] + REFLECT)
def test_reference_matches_per_sample_pipeline(case):
    args = make_inputs(*case)
    torch.testing.assert_close(augment_reference(*args, torch.float32, False), per_sample(*args), atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("cl", [False, True], ids=["nchw", "channels_last"])
def test_cpu_matches_reference(case, cl, monkeypatch):
    args = make_inputs(*case)
    fmt = torch.channels_last if cl else torch.contiguous_format
    for out_dtype in (torch.uint8, torch.float32, torch.bfloat16):
        ref = augment_reference(*args, out_dtype, cl)
        out = run(monkeypatch, "cpu", args, out_dtype, cl)
        assert out.dtype == ref.dtype == out_dtype and out.shape == ref.shape
        assert out.is_contiguous(memory_format=fmt) and ref.is_contiguous(memory_format=fmt)
        if out_dtype == torch.float32:
            torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
        else:  # uint8: the integer part; bf16: same float arithmetic, same rounding
            assert torch.equal(out, ref), out_dtype


def test_extremes(monkeypatch):
    """δ clamps at 0 and 255; padding stays 0 under δ; extreme shifts with pad == H; partial crops with flips."""
    H = W = 4
    images = torch.tensor([0, 255], dtype=torch.uint8).repeat_interleave(H * W * 3).reshape(2, H, W, 3)
    delta = torch.tensor([-128, 127], dtype=torch.int8).repeat_interleave(H * W * 3).reshape(2, H, W, 3)
    idx = torch.tensor([0, 1, 0, 1, 0, 1])
    rows = torch.tensor([0, 1, 0, 1, 1, 0])
    shifts = torch.tensor([[0, 0], [8, 8], [4, 4], [4, 4], [2, 5], [6, 3]], dtype=torch.int32)
    flips = torch.tensor([0, 1, 0, 1, 1, 0], dtype=torch.bool)
    want = torch.zeros(6, 3, H, W, dtype=torch.uint8)  # samples 0, 1: the crop is all padding; 2: 0 - 128 -> 0
    want[3] = 255                                      # 255 + 127 -> 255
    want[4, :, 2:, 1:] = 127                           # sy = y - 2, sx = (3 - x) + 1: rows 2.., columns 1..
    want[5, :, :2, 1:] = 127                           # sy = y + 2, sx = x - 1: rows ..1, columns 1..
    args = (images, idx, delta, rows, shifts, flips, H, False, torch.ones(3), torch.zeros(3))
    assert torch.equal(augment_reference(*args, torch.uint8, False), want)
    for cl in (False, True):
        assert torch.equal(run(monkeypatch, "cpu", args, torch.uint8, cl), want)
        assert torch.equal(run(monkeypatch, "cpu", args, torch.float32, cl), want.float())


def test_pad_equal_to_size_gives_bias(monkeypatch):
    args = list(make_inputs(2, 3, 3, 3, 2, 3, "sample"))
    args[4] = torch.zeros(2, 2, dtype=torch.int64)  # dy = dx = 0 with pad = H = W: every source pixel is outside
    out = run(monkeypatch, "cpu", args, torch.float32, True)
    torch.testing.assert_close(out, args[9][None, :, None, None].expand_as(out), atol=0, rtol=0)


def test_reflect_padding_by_hand(monkeypatch):
    """A 3x3 ramp padded by 2 and cropped at (0, 0) is the image mirrored both ways (flipped: mirrored vertically only);
    a mirrored pixel carries the δ of the pixel it mirrors."""
    images = torch.arange(9, dtype=torch.uint8).reshape(1, 3, 3, 1)
    delta = torch.zeros(1, 3, 3, 1, dtype=torch.int8)
    delta[0, 0, 0, 0] = 100
    idx, rows = torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64)
    shifts, flips = torch.zeros(2, 2, dtype=torch.int64), torch.tensor([0, 1], dtype=torch.uint8)
    ramp = torch.arange(9).reshape(3, 3)
    ramp[0, 0] = 100
    want = torch.stack([ramp.flip(0).flip(1), ramp.flip(0)])[:, None].to(torch.uint8)
    args = (images, idx, delta, rows, shifts, flips, 2, True, torch.ones(1), torch.zeros(1))
    assert torch.equal(augment_reference(*args, torch.uint8, False), want)
    for cl in (False, True):
        assert torch.equal(run(monkeypatch, "cpu", args, torch.uint8, cl), want)


def test_public_wrapper():
    images, idx = make_inputs(16, 8, 8, 3, 8, 4, "none")[:2]
    labels = torch.randint(0, 4, (16,))
    delta = torch.randint(-8, 9, (4, 8, 8, 3), dtype=torch.int8)
    seeded = [augment_batch(images, idx, delta=delta, labels=labels, generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert torch.equal(seeded[0], seeded[1]) and not torch.equal(seeded[0], seeded[2])
    g = torch.Generator().manual_seed(3)
    shifts, flips = draw_crop_flip(8, 4, True, g, "cpu")
    scale, bias = normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    by_hand = augment_reference(images, idx, delta, labels[idx], shifts, flips, 4, False, scale, bias, torch.float32, False)
    torch.testing.assert_close(seeded[0], by_hand, atol=1e-6, rtol=0)
    plain = augment_batch(images, idx, crop_pad=0, flip=False, mean=(0, 0, 0), std=(1, 1, 1), layout="channels_last")
    assert plain.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(plain, images[idx].permute(0, 3, 1, 2).float() / 255, atol=1e-6, rtol=0)
    mirrored = augment_batch(images, idx, crop_pad=2, pad_mode="reflect", generator=torch.Generator().manual_seed(5))
    shifts, flips = draw_crop_flip(8, 2, True, torch.Generator().manual_seed(5), "cpu")
    torch.testing.assert_close(mirrored, augment_reference(images, idx, None, None, shifts, flips, 2, True, scale, bias, torch.float32, False),
                               atol=1e-6, rtol=0)


def _set(i, value):
    return lambda a: a.__setitem__(i, value)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (_set(0, torch.zeros(4, 8, 8, 3)), "images must be a contiguous uint8"),
        (_set(0, torch.zeros(4, 8, 3, 8, dtype=torch.uint8).transpose(2, 3)), "images must be a contiguous uint8"),
        (_set(1, torch.tensor([0, 4])), "idx out of range"),
        (_set(1, torch.tensor([0, 1], dtype=torch.int32)), "idx must be int64"),
        (_set(2, torch.zeros(4, 8, 8, 3, dtype=torch.int16)), "delta must be"),
        (_set(3, torch.tensor([0, 7])), "delta_rows out of range"),
        (_set(4, torch.tensor([[0, 5], [0, 0]])), "shifts must lie"),
        (_set(4, torch.tensor([[0, -1], [0, 0]])), "shifts must lie"),
        (_set(5, torch.zeros(2, dtype=torch.float32)), "flips must be"),
        (_set(6, 9), "crop_pad=9"),
        (lambda a: (_set(6, 8)(a), _set(7, True)(a)), "crop_pad=8 with reflect padding must be below 8"),
        (_set(8, torch.ones(2)), "scale and bias"),
    ],
)
def test_bad_inputs(mutate, match):
    args = list(make_inputs(4, 8, 8, 3, 2, 2, "sample"))
    mutate(args)
    with pytest.raises(PstFastError, match=match):
        augment_op(*args, torch.float32, False)


def test_device_mismatch():
    args = list(make_inputs(4, 8, 8, 3, 2, 2, "none"))
    args[5] = args[5].to("meta")  # the op itself would route any meta input to its fake kernel
    with pytest.raises(PstFastError, match="flips is on meta"):
        _check(*args, torch.float32)


def test_bad_wrapper_options():
    images, idx = make_inputs(4, 8, 8, 3, 2, 2, "none")[:2]
    with pytest.raises(PstFastError, match="layout"):
        augment_batch(images, idx, layout="nhwc")
    with pytest.raises(PstFastError, match="crop_pad"):
        augment_batch(images, idx, crop_pad=-1)
    with pytest.raises(PstFastError, match="pad_mode='mirror'"):
        augment_batch(images, idx, pad_mode="mirror")
    with pytest.raises(PstFastError, match="out_dtype"):
        augment_batch(images, idx, out_dtype=torch.float16)
    with pytest.raises(PstFastError, match="std > 0"):
        augment_batch(images, idx, std=(0.2, 0.0, 0.2))


def under_torch_compile(device="cpu", backend="inductor"):
    """The op traced by torch.compile (fullgraph) on ``device`` gives the reference's result (scripts/device_check.py runs it on CUDA)."""
    args = [a.to(device) if isinstance(a, torch.Tensor) else a for a in make_inputs(8, 16, 16, 3, 4, 2, "sample")]
    fn = torch.compile(lambda *a: augment_op(*a, torch.float32, True) * 2.0, fullgraph=True, backend=backend)
    torch.testing.assert_close(fn(*args).cpu(), augment_reference(*make_inputs(8, 16, 16, 3, 4, 2, "sample"), torch.float32, True) * 2.0,
                               atol=1e-6, rtol=0)


def test_under_torch_compile():
    pytest.importorskip("torch._inductor")
    under_torch_compile()


def triton_matches_reference(device, cases):
    """The Triton kernel on ``device`` (CPU tensors under TRITON_INTERPRET=1, or CUDA) against the torch reference on the CPU,
    for every case of ``cases`` in both layouts and all output dtypes; every call must launch the kernel."""
    import pst_fast.kernels.augment as K
    from pst_fast import backend

    launches = []
    run = K._augment_kernel.run
    K._augment_kernel.run = lambda *a, **k: (launches.append(k.get("grid")), run(*a, **k))[1]
    try:
        for case in cases:
            args = make_inputs(*case)
            on = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]
            assert backend.choose(on[0]) == "triton"
            for cl in (False, True):
                assert torch.equal(augment_op(*on, torch.uint8, cl).cpu(), augment_reference(*args, torch.uint8, cl)), case
                ref = augment_reference(*args, torch.float32, cl)
                torch.testing.assert_close(augment_op(*on, torch.float32, cl).cpu(), ref, atol=1e-6, rtol=0)
                torch.testing.assert_close(augment_op(*on, torch.bfloat16, cl).float().cpu(), ref, atol=1e-2, rtol=8e-3)
    finally:
        K._augment_kernel.run = run
    assert len(launches) == 6 * len(cases), launches


TRITON_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_augment import CASES, REFLECT, triton_matches_reference
    triton_matches_reference("cpu", CASES[:3] + CASES[24:28] + REFLECT[-3:])
    print("TRITON_OK")
    """
)


def test_triton_matches_reference_in_interpreter():
    run_in_triton_interpreter(TRITON_SCRIPT, os.path.dirname(os.path.abspath(__file__)))
