"""EM generation: pst_fast's engine against an eager re-creation of the official loop, same model and data.

The baseline keeps the structure of Huang et al.'s sample-wise loop: a per-sample DataLoader (uint8 ->
float per image, as ToTensor), the noise bank on the host with per-sample Python bookkeeping (a loop
that gathers and scatters one δ at a time), parameters left requiring gradients during the sweep (full
backward), and the PGD step as separate eager ops (sign, add, clamp, clamp). pst_fast keeps the data and
δ resident, computes only the input gradient against a BatchNorm-folded copy, and updates δ with the
fused ``pgd_step_``. Both run the official round: M=10 surrogate steps, a 20-step PGD sweep over every
image, and the stop-condition accuracy pass.

Printed: per PGD step (one batch) and per round, seconds (median ± spread), the ratio to the baseline,
and achieved GFLOP/s as a fraction of the machine's measured float32 matmul peak. The FLOPs counted are
the work the round needs (forward + input backward per PGD image-step, forward + full backward per
training image, forward per evaluated image; backward taken as 1× forward per gradient kind).

Usage: python benchmarks/em_generation.py [--n 2048] [--model fastnet-small] [--quick]
"""
import argparse
import copy

import numpy as np
import torch
import torch.nn.functional as F

from pst_fast import data
from pst_fast.attacks.em import EMParams, error_minimizing
from pst_fast.benchmark import Entry, Peaks, entry, matmul_peak_gflops, measure, ratio_text
from pst_fast.data.format import ImageDataset
from pst_fast.device import amp_enabled
from pst_fast.models import create_model
from pst_fast.models.flops import count_flops
from pst_fast.pgd import PGD, Surrogate, gather, perturb


class PerSample(torch.utils.data.Dataset):
    """What torchvision's CIFAR10 + ToTensor hands the official loop: one float CHW image at a time."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.from_numpy(np.ascontiguousarray(self.images[i])).permute(2, 0, 1).float().div(255), int(self.labels[i])


class Normalized(torch.nn.Module):
    def __init__(self, model, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return self.model((x - self.mean) / self.std)


def official_min_min(model, images, labels, noise, p: EMParams):
    """The official min_min_attack: eager PGD descent on the clamped image, parameters still requiring grad."""
    perturb_img = torch.clamp(images + noise, 0, 1).requires_grad_(True)
    eta = noise
    for _ in range(p.steps):
        model.zero_grad()
        loss = F.cross_entropy(model(perturb_img), labels)
        loss.backward()
        eta = p.step_size * perturb_img.grad.data.sign() * (-1)
        perturb_img = perturb_img.data + eta
        eta = torch.clamp(perturb_img - images, -p.eps, p.eps)
        perturb_img = torch.clamp(images + eta, 0, 1).requires_grad_(True)
    return eta


def official_round(model, opt, loader, noise, p: EMParams, device="cpu"):
    """One round of the official sample-wise loop: M train steps, the sweep, the stop-condition pass. As the official code,
    the noise bank stays on the host and each batch moves to ``device`` after its noise is added."""
    it, idx = iter(loader), 0
    model.train()
    for _ in range(p.train_steps):
        try:
            images, labels = next(it)
        except StopIteration:  # the official loop restarts the loader when it runs out
            it, idx = iter(loader), 0
            images, labels = next(it)
        for i in range(len(images)):  # per-sample bookkeeping, δ on the host
            images[i] += noise[idx]
            idx += 1
        images, labels = images.to(device), labels.to(device)
        loss = F.cross_entropy(model(images.clamp(0, 1)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    idx = 0
    for images, labels in loader:
        batch_noise = torch.stack([noise[idx + i] for i in range(len(images))]).to(device)
        eta = official_min_min(model, images.to(device), labels.to(device), batch_noise, p)
        for delta in eta:
            noise[idx] = delta.clone().detach().cpu()
            idx += 1
    correct, idx = 0, 0
    with torch.no_grad():
        for images, labels in loader:
            for i in range(len(images)):
                images[i] += noise[idx]
                idx += 1
            correct += int((model(images.to(device).clamp(0, 1)).argmax(1) == labels.to(device)).sum())
    return correct / len(noise)


def load_subset(name: str, n: int) -> tuple[ImageDataset, ImageDataset]:
    """The full training split and a seeded random subset of ``n`` images."""
    full = data.load(name, "train")
    pick = np.random.default_rng(0).permutation(len(full))[:n]
    return full, ImageDataset(np.asarray(full.images)[pick], np.asarray(full.labels)[pick], full.meta, path=full.path)


def time_rounds(full: ImageDataset, sub: ImageDataset, p: EMParams, n: int, repeat: int, device="cpu"):
    """(official round, engine round, FLOPs per round): one EM round over ``sub`` each way on ``device`` (the official loop in
    float32 as published; the engine with ``p.amp``)."""
    fwd = count_flops(create_model(p.model, num_classes=full.num_classes), 32)
    loader = torch.utils.data.DataLoader(PerSample(sub.images, sub.labels), batch_size=p.batch_size, shuffle=False)
    base_round_model = Normalized(create_model(p.model, num_classes=full.num_classes), full.meta["mean"], full.meta["std"]).to(device)
    base_opt = torch.optim.SGD(base_round_model.parameters(), lr=p.lr, momentum=0.9, weight_decay=5e-4)
    noise = [(torch.rand(3, 32, 32) * 2 - 1) * p.eps for _ in range(n)]
    r_base = measure(lambda: official_round(base_round_model, base_opt, loader, noise, p, device), repeat=repeat, warmup=0, device=device)
    r_fast = measure(lambda: error_minimizing(sub, p, seed=0, device=device, progress=False), repeat=repeat, warmup=1, device=device)
    return r_base, r_fast, 3 * fwd * p.batch_size * p.train_steps + 2 * fwd * n * p.steps + fwd * n


def engine_peak(p: EMParams, device) -> str:
    """The peak an engine round is measured against: the bfloat16 matmul peak when its surrogate runs under bf16 autocast."""
    return "matmul-bf16" if amp_enabled(p.amp, torch.device(device)) else "matmul"


def suite(quick: bool, peaks: Peaks) -> list[Entry]:
    """``em_round``: one official EM round (M=10 steps, a 20-step PGD sweep, the accuracy pass) by the engine (its default
    precision: bf16 autocast on CUDA) against the eager float32 re-creation of the official loop, on the peaks' device; images
    swept per second, FLOPs against the matmul peak of the engine's precision."""
    n = 512 if quick else 2048
    torch.manual_seed(0)
    full, sub = load_subset("cifar10-mini", n)
    p = EMParams(model="fastnet-small", batch_size=512, max_rounds=1, stop_acc=2.0)
    base, fast, flops = time_rounds(full, sub, p, n, 3, peaks.device)
    return [entry("em_round", "images/s", n, fast, base, "eager re-creation of the official loop", peaks, engine_peak(p, peaks.device), flops,
                  f"fastnet-small surrogate, {n} cifar10-mini images, batch 512, 20 PGD steps, M=10, engine amp {p.amp}")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="cifar10-mini")
    ap.add_argument("--n", type=int, default=2048, help="training images used (a round sweeps all of them)")
    ap.add_argument("--model", default="fastnet-small", help="surrogate (the CPU default is fastnet-small)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="n=1024, 2 repeats")
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeat = 1024, 2
    torch.manual_seed(0)
    full, sub = load_subset(args.data, args.n)
    p = EMParams(model=args.model, batch_size=args.batch_size, max_rounds=1, stop_acc=2.0)
    mean, std = full.meta["mean"], full.meta["std"]
    fwd = count_flops(create_model(args.model, num_classes=full.num_classes), 32)
    peak = matmul_peak_gflops()
    print(f"EM generation, {args.model} ({fwd / 1e6:.1f} MFLOP/image forward), {args.n} images, batch {args.batch_size}, "
          f"{p.steps} PGD steps, M={p.train_steps}; float32 matmul peak {peak:.1f} GFLOP/s, {torch.get_num_threads()} threads")

    base_model = Normalized(create_model(args.model, num_classes=full.num_classes), mean, std)
    images = torch.from_numpy(np.asarray(sub.images)[: args.batch_size]).permute(0, 3, 1, 2).float().div(255).contiguous()
    labels = torch.from_numpy(np.asarray(sub.labels)[: args.batch_size])
    noise0 = (torch.rand_like(images) * 2 - 1) * p.eps
    surrogate = Surrogate(copy.deepcopy(base_model.model), full.norm, "cpu")
    surrogate.model.eval()
    base_model.eval()
    frozen = surrogate.frozen()
    u8 = torch.from_numpy(np.ascontiguousarray(np.asarray(sub.images)[: args.batch_size]))
    idx = torch.arange(args.batch_size)
    pgd = PGD(steps=p.steps, step_size=p.step_size, eps=p.eps, direction=-1)

    def engine_sweep():
        perturb(frozen, gather(u8, idx), noise0.clone(), labels, pgd)

    t_base = measure(lambda: official_min_min(base_model, images, labels, noise0, p), repeat=args.repeat, warmup=1)
    t_fast = measure(engine_sweep, repeat=args.repeat, warmup=1)
    step_flops = 2 * fwd * args.batch_size  # forward + input backward per image-step
    print(f"\nper PGD step (batch {args.batch_size})   ms/step        GFLOP/s  of peak  vs official")
    for name, t in (("official eager", t_base), ("pst_fast engine", t_fast)):
        per = t.median / p.steps
        gf = step_flops / per / 1e9
        ratio = "1.00x" if t is t_base else ratio_text(t, t_base)
        print(f"{name:<30} {1e3 * per:8.2f} ± {1e3 * t.spread / p.steps:6.2f} {gf:8.1f} {100 * gf / peak:7.1f}%  {ratio}")

    r_base, r_fast, round_flops = time_rounds(full, sub, p, args.n, args.repeat)
    print(f"\nper round ({args.n} images)              s/round        GFLOP/s  of peak  vs official")
    for name, t in (("official eager", r_base), ("pst_fast engine", r_fast)):
        gf = round_flops / t.median / 1e9
        ratio = "1.00x" if t is r_base else ratio_text(t, r_base)
        print(f"{name:<30} {t.median:8.2f} ± {t.spread:6.2f} {gf:8.1f} {100 * gf / peak:7.1f}%  {ratio}")


if __name__ == "__main__":
    main()
