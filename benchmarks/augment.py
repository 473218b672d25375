"""augment_batch throughput: per-sample eager pipeline vs the fused op (torch reference, C++, Triton), same run.

CIFAR-shaped uint8 data (N x 32 x 32 x 3) with a per-sample int8 δ, batch 512, crop pad 4 (zero padding, or
reflect with --pad-mode reflect) + flip, float32 output in NCHW and channels_last. Prints images/s (median over repeats, spread = (max-min)/median),
the ratio to the per-sample baseline of the same layout, and the achieved memory traffic (uint8 image
+ int8 δ read, float32 written) as a fraction of a large torch copy measured at the start of the run.
Triton rows appear only when CUDA is present.
Usage: python benchmarks/augment.py [--quick] [--rows N] [--batch 512] [--repeat 7] [--threads T] [--pad-mode zero|reflect]
"""
import argparse
import itertools
import os

import torch
import torch.nn.functional as F

from pst_fast import backend
from pst_fast.benchmark import Entry, Peaks, copy_bandwidth_gbs, entry, measure, ratio_text
from pst_fast.ops.augment import CIFAR10_MEAN, CIFAR10_STD, augment_batch

PAD = 4


def per_sample_pipeline(images, delta, mean, std, channels_last, pad_mode="zero"):
    """The eager torchvision-style baseline: one image at a time (+δ, pad, random crop, flip, to float, normalize), then stack."""
    H, W = images.shape[1:3]
    mean, std = torch.tensor(mean, device=images.device)[:, None, None], torch.tensor(std, device=images.device)[:, None, None]

    def run(idx):
        out = []
        for i in idx.tolist():
            x = (images[i].to(torch.int16) + delta[i]).clamp_(0, 255).to(torch.uint8).permute(2, 0, 1)
            x = F.pad(x, (PAD,) * 4) if pad_mode == "zero" else F.pad(x.float(), (PAD,) * 4, mode="reflect")
            dy, dx = torch.randint(0, 2 * PAD + 1, (2,)).tolist()
            x = x[:, dy : dy + H, dx : dx + W]
            if torch.rand(()) < 0.5:
                x = x.flip(2)
            out.append((x.float().div_(255) - mean) / std)
        x = torch.stack(out)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    return run


def fused(images, delta, layout, backend_name, generator, pad_mode="zero"):
    def run(idx):
        os.environ["PST_FAST_BACKEND"] = backend_name
        return augment_batch(images, idx, delta=delta, crop_pad=PAD, layout=layout, generator=generator, pad_mode=pad_mode)

    return run


def make_inputs(rows: int, batch: int, device):
    """rows x 32x32x3 uint8 images, a per-sample int8 δ, 16 cycling batches of indices and the op's generator."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (rows, 32, 32, 3), generator=g, dtype=torch.uint8).to(device)
    delta = torch.randint(-8, 9, (rows, 32, 32, 3), generator=g, dtype=torch.int8).to(device)
    batches = itertools.cycle([torch.randint(0, rows, (batch,), generator=g).to(device) for _ in range(16)])
    return images, delta, batches, torch.Generator(device=device).manual_seed(0)


def suite(quick: bool, peaks: Peaks) -> list[Entry]:
    """``augment``: the fused op on its dispatch path (C++ on CPU, Triton on CUDA), channels_last float32, against
    the per-sample eager pipeline; bytes moved (uint8 image + int8 δ read, float32 written) against the copy peak."""
    rows, batch, repeat, secs = (5000, 512, 5, 0.1) if quick else (50000, 512, 7, 0.3)
    images, delta, batches, gen = make_inputs(rows, batch, peaks.device)
    baseline = per_sample_pipeline(images, delta, CIFAR10_MEAN, CIFAR10_STD, True)
    base = measure(lambda: baseline(next(batches)), repeat=3, warmup=2, device=peaks.device, min_seconds=3 * secs)
    fast = measure(lambda: augment_batch(images, next(batches), delta=delta, crop_pad=PAD, layout="channels_last", generator=gen),
                   repeat=repeat, warmup=2, device=peaks.device, min_seconds=secs)
    return [entry("augment", "images/s", batch, fast, base, "per-sample eager pipeline", peaks, "copy", batch * 32 * 32 * 3 * 6,
                  f"batch {batch} of {rows} x 32x32x3 uint8 + int8 δ, crop 4 + flip, channels_last f32, {backend.choose(images)} path")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="5000 rows, fewer and shorter repeats")
    p.add_argument("--rows", type=int, default=None, help="dataset rows (default 50000, 5000 with --quick)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeat", type=int, default=None, help="measured samples per row (default 7, 5 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and the C++ op (default: all)")
    p.add_argument("--pad-mode", choices=("zero", "reflect"), default="zero", help="the crops' padding (default zero)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)  # the extension shares torch's OpenMP runtime, so this bounds both
    rows = a.rows or (5000 if a.quick else 50000)
    repeat = a.repeat or (5 if a.quick else 7)
    min_seconds = 0.1 if a.quick else 0.3
    device = "cuda" if torch.cuda.is_available() else "cpu"

    images, delta, batches, gen = make_inputs(rows, a.batch, device)

    copy_gbs = copy_bandwidth_gbs(device)
    threads = backend.native().num_threads() if backend.native() else torch.get_num_threads()
    print(f"device {device}, {threads} threads, {rows} x 32x32x3 uint8 + per-sample int8 delta, batch {a.batch}, "
          f"crop pad {PAD} ({a.pad_mode}) + flip, float32 out; torch copy {copy_gbs:.2f} GB/s (read + written, measured)")

    backends = ["reference"] + (["cpu"] if device == "cpu" and backend.native() else []) + (["triton"] if device == "cuda" else [])
    bytes_per_batch = a.batch * 32 * 32 * 3 * (1 + 1 + 4)  # image + delta read, float32 written
    print(f"{'pipeline':<31} {'layout':<14} {'images/s':>9} {'spread':>7} {'GB/s':>6} {'of copy':>8}  vs (a)")
    for layout in ("nchw", "channels_last"):
        cl = layout == "channels_last"
        baseline = per_sample_pipeline(images, delta, CIFAR10_MEAN, CIFAR10_STD, cl, a.pad_mode)
        variants = [("(a) per-sample eager", baseline, 3 * min_seconds, 3)]
        names = {"reference": "(b) fused op, torch reference", "cpu": "(c) fused op, C++", "triton": "(d) fused op, Triton"}
        variants += [(names[b], fused(images, delta, layout, b, gen, a.pad_mode), min_seconds, repeat) for b in backends]
        base = None
        for name, fn, secs, reps in variants:
            t = measure(lambda: fn(next(batches)), repeat=reps, warmup=2, device=device, min_seconds=secs)
            base = base or t
            gbs = bytes_per_batch / t.median / 1e9
            print(f"{name:<31} {layout:<14} {a.batch / t.median:9.0f} {100 * t.spread / t.median:6.1f}% "
                  f"{gbs:6.2f} {100 * gbs / copy_gbs:7.1f}%  {'1.00x' if t is base else ratio_text(t, base)}")
    if device != "cuda":
        print("(d) Triton: not measured (no CUDA device here; the kernel is tested under TRITON_INTERPRET=1)")


if __name__ == "__main__":
    main()
