"""Training-step throughput: eager vs torch.compile, fastnet and ResNet-18 at batch 128, same run.

Modes: eager (channels_last, the trainer's CNN default), eager-nchw, compiled (torch.compile, channels_last).
Prints images/s, the ratio to eager, and achieved GFLOP/s (3x forward FLOPs per image for
forward + backward) as a fraction of the machine's matmul peak measured at the start of the run.
Usage: python benchmarks/train_step.py [--models fastnet resnet18] [--batch 128] [--steps 10] [--device cpu]
"""
import argparse

import torch
import torch.nn.functional as F

from pst_fast.benchmark import Entry, Peaks, entry, matmul_peak_gflops, measure, ratio_text
from pst_fast.models import create_model, model_info


def step_fn(model, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.2)
        loss.backward()
        opt.step()
    return step


def time_mode(name: str, mode: str, batch: int, steps: int, device, min_seconds: float = 1.0):
    """Seconds per optimizer step of ``name`` in ``mode`` (eager, eager-nchw or compiled)."""
    torch.manual_seed(0)
    size = model_info(name)["image_size"]
    fmt = torch.contiguous_format if mode == "eager-nchw" else torch.channels_last
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    model = create_model(name, num_classes=10).to(device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    fwd = torch.compile(model) if mode == "compiled" else model
    return measure(step_fn(fwd, opt, x, y), repeat=steps, warmup=3, device=device, min_seconds=min_seconds)


def bench_model(name, batch, steps, device, peak):
    flops = 3 * model_info(name)["flops_per_image"] * batch
    base = None
    for mode in ("eager", "eager-nchw", "compiled"):
        t = time_mode(name, mode, batch, steps, device)
        base = base or t
        gflops = flops / t.median / 1e9
        print(f"{name:<10} {mode:<9} {batch / t.median:9.0f} img/s  ±{100 * t.spread / t.median:4.1f}%  "
              f"{gflops:7.1f} GFLOP/s = {100 * gflops / peak:5.1f}% of peak  ratio vs eager: {ratio_text(t, base)}")


def suite(quick: bool, peaks: Peaks) -> list[Entry]:
    """``train_step_compiled``: a fastnet training step (batch 128, channels_last) under torch.compile against eager;
    3× forward FLOPs per image against the matmul peak."""
    batch, steps, secs = 128, (3 if quick else 5), (0.5 if quick else 1.0)
    base = time_mode("fastnet", "eager", batch, steps, peaks.device, secs)
    fast = time_mode("fastnet", "compiled", batch, steps, peaks.device, secs)
    return [entry("train_step_compiled", "images/s", batch, fast, base, "eager step", peaks, "matmul",
                  3 * model_info("fastnet")["flops_per_image"] * batch, f"fastnet, batch {batch}, channels_last, float32, SGD nesterov")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["fastnet", "resnet18"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="measured samples per mode (each loops over >= 1 s of steps)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    peak = matmul_peak_gflops(a.device)
    print(f"device {a.device}, {torch.get_num_threads()} threads, fp32 matmul peak {peak:.1f} GFLOP/s (measured)")
    for name in a.models:
        bench_model(name, a.batch, a.steps, a.device, peak)


if __name__ == "__main__":
    main()
