"""Training-step throughput: an eager float32 NCHW step (what reference UE code runs) against the trainer's layouts,
bf16 autocast and torch.compile, one model at a time, samples interleaved, same run.

Modes (layout, precision, compile):
  reference      NCHW, float32, eager — the eager-PyTorch baseline
  eager          channels_last, float32, eager — the trainer's CPU default
  eager-bf16     channels_last, bf16 autocast, eager — `train --amp on`
  compiled       channels_last, float32, torch.compile — `train --compile`
  compiled-bf16  channels_last, bf16 autocast, torch.compile — `train --compile --amp on` (the CUDA default path)
torch.compile uses mode="reduce-overhead" (CUDA graphs) on CUDA, as the trainer does.
Prints images/s, the ratio to the reference, and achieved GFLOP/s (3x forward FLOPs per image for forward + backward)
as a fraction of the float32 or bfloat16 matmul peak measured at the start of the run.
Usage: python benchmarks/train_step.py [--models fastnet resnet18] [--modes ...] [--batch 128] [--steps 5] [--device cpu]
"""
import argparse
import contextlib

import torch
import torch.nn.functional as F

from pst_fast.benchmark import Entry, Peaks, entry, measure_interleaved, ratio_text
from pst_fast.models import create_model, model_info

MODES = {  # name -> (channels_last, bf16 autocast, torch.compile)
    "reference": (False, False, False),
    "eager": (True, False, False),
    "eager-bf16": (True, True, False),
    "compiled": (True, False, True),
    "compiled-bf16": (True, True, True),
}


def make_step(name: str, mode: str, batch: int, device):
    """A closure running one SGD (nesterov) step of a fresh ``name`` on a fixed random batch in ``mode``."""
    channels_last, bf16, compiled = MODES[mode]
    device = torch.device(device)
    torch.manual_seed(0)
    size = model_info(name)["image_size"]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    model = create_model(name, num_classes=10).to(device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    fwd = torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None) if compiled else model

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = F.cross_entropy(fwd(x), y, label_smoothing=0.2)
        loss.backward()
        opt.step()
    return step


def time_modes(name: str, modes: list[str], batch: int, steps: int, device, min_seconds: float = 1.0):
    """{mode: Timing} of one step per mode, samples taken in turns so that machine noise hits every mode alike."""
    fns = [make_step(name, m, batch, device) for m in modes]
    return dict(zip(modes, measure_interleaved(fns, repeat=steps, warmup=3, device=device, min_seconds=min_seconds)))


def suite(quick: bool, peaks: Peaks) -> list[Entry]:
    """``train_step_compiled``: the trainer's compiled step (`train --compile --amp on`: torch.compile, bf16 autocast,
    channels_last) of fastnet at batch 128 against the eager float32 NCHW step; 3× forward FLOPs per image against the
    bfloat16 matmul peak. ``python benchmarks/train_step.py`` separates layout, precision and compile."""
    batch, steps, secs = 128, (3 if quick else 7), (0.5 if quick else 1.0)
    t = time_modes("fastnet", ["reference", "compiled-bf16"], batch, steps, peaks.device, secs)
    return [entry("train_step_compiled", "images/s", batch, t["compiled-bf16"], t["reference"], "eager float32 NCHW step", peaks,
                  "matmul-bf16", 3 * model_info("fastnet")["flops_per_image"] * batch,
                  f"fastnet, batch {batch}, SGD nesterov; torch.compile + bf16 autocast + channels_last")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["fastnet", "resnet18"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), help="the first is the ratios' baseline")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="measured samples per mode (each loops over >= 1 s of steps)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    peaks = Peaks.measure(a.device)
    print(f"device {a.device}, {peaks.threads} threads, matmul peaks (measured): float32 {peaks.matmul_gflops:.1f}, "
          f"bfloat16 {peaks.bf16_label()}")
    print("| model | mode | images/s | spread | vs " + a.modes[0] + " | % of matmul peak (own precision) |\n|---|---|---|---|---|---|")
    for name in a.models:
        flops = 3 * model_info(name)["flops_per_image"] * a.batch
        timings = time_modes(name, a.modes, a.batch, a.steps, a.device)
        base = timings[a.modes[0]]
        for mode, t in timings.items():
            kind = "matmul-bf16" if MODES[mode][1] else "matmul"
            print(f"| {name} | {mode} | {a.batch / t.median:,.0f} | ±{100 * t.spread / t.median:.1f}% | {'baseline' if t is base else ratio_text(t, base)} | "
                  f"{100 * peaks.fraction(kind, flops / t.median):.1f}% |")


if __name__ == "__main__":
    main()
