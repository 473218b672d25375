"""SAL in exact mode: pst_fast's batched engine against a straightforward re-creation of the official per-layer
loop (deep copies, one layer and one direction at a time, a whole-model forward per batch), same model, same
data passes, same settings, timed in turns (A B A B ...) in the same run.

Both implementations cost rounds × images linearly, so the script times ``--rounds`` round(s) over a fixed
class-balanced subset of ``--images`` training images and extrapolates to one exact-mode epoch (10 rounds over
the whole training set). Printed: seconds per round, the ratio, each side's FLOPs (counted with
torch.utils.flop_counter on two batches and scaled), achieved GFLOP/s and the fraction of the machine's
measured float32 matmul peak. The FLOP ratio is what any exact implementation can gain on a compute-bound
machine: the definition itself needs every layer's suffix forward and backward.

Usage: python benchmarks/sal_epoch.py [--model fastnet] [--data cifar10-mini] [--images 1024] [--rounds 1] [--repeat 3]
"""
import argparse
import dataclasses

import torch
from torch.utils.flop_counter import FlopCounterMode

from pst_fast import data
from pst_fast.benchmark import Entry, Peaks, entry, matmul_peak_gflops, measure_interleaved, ratio_text
from pst_fast.metrics.sal import SALConfig, make_sal_data, sal_epoch
from pst_fast.metrics.sal_reference import sal_epoch_reference
from pst_fast.models import create_model
from pst_fast.training import TrainConfig


def time_sal(model_name: str, data_name: str, images: int, rounds: int, batch: int, repeat: int, device="cpu"):
    """(engine timing, official-loop timing, [engine FLOPs, official FLOPs]) of ``rounds`` exact-mode SAL round(s) over a
    class-balanced subset of ``images`` training images on ``device`` (float32 both); FLOPs counted on two batches and scaled."""
    train_ds, test_ds = data.load(data_name, "train"), data.load(data_name, "test")
    torch.manual_seed(0)
    model = create_model(model_name, train_ds.num_classes).to(device, memory_format=torch.channels_last)
    with torch.no_grad():  # BatchNorm statistics of a trained model, not the identity of a fresh one
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0), m.running_mean.normal_(0, 0.2)
    tcfg = TrainConfig(data=data_name, model=model_name, batch_size=batch)
    where = dict(layout="channels_last", device=device)
    scfg = SALConfig(mode="exact", rounds=rounds, subset=images)

    def call(fn, cfg=scfg):
        return lambda: fn(model, make_sal_data(cfg.resolved(), tcfg, train_ds, test_ds, 0, **where), cfg, 1.0, tcfg.label_smoothing)

    small = dataclasses.replace(scfg, rounds=1, subset=2 * batch)
    flops = []
    for fn in (sal_epoch, sal_epoch_reference):
        with FlopCounterMode(display=False) as fc:
            call(fn, small)()
        flops.append(fc.get_total_flops() * rounds * images / (2 * batch))
    fast, ref = measure_interleaved([call(sal_epoch), call(sal_epoch_reference)], repeat=repeat, warmup=1, device=device)
    return fast, ref, flops


def suite(quick: bool, peaks: Peaks) -> list[Entry]:
    """``sal_epoch``: one exact-mode SAL round by the batched engine against the re-created official per-layer loop, in
    turns, on the peaks' device; images per second of the round, counted FLOPs against the matmul peak."""
    images = 256 if quick else 1024
    fast, ref, flops = time_sal("fastnet", "cifar10-mini", images, 1, 128, 3, peaks.device)
    return [entry("sal_epoch", "images/s", images, fast, ref, "re-created official per-layer loop", peaks, "matmul", flops[0],
                  f"fastnet, exact mode, 1 round over {images} cifar10-mini images, batch 128")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="fastnet")
    ap.add_argument("--data", default="cifar10-mini")
    ap.add_argument("--images", type=int, default=1024, help="training images per pass (a fixed class-balanced subset)")
    ap.add_argument("--rounds", type=int, default=1, help="SAL rounds per timed call (exact mode runs 10)")
    ap.add_argument("--batch", type=int, default=128, help="SGD batch size of the SAL passes (the run's training batch size)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    peak = matmul_peak_gflops()
    train_ds = data.load(args.data, "train")
    fast, ref, flops = time_sal(args.model, args.data, args.images, args.rounds, args.batch, args.repeat)
    full = 10 * len(train_ds) / (args.rounds * args.images)
    print(f"SAL exact, {args.model} on {args.data}: {args.rounds} round(s) over {args.images} images, batch {args.batch}, "
          f"float32 CPU, {torch.get_num_threads()} threads; matmul peak {peak:.1f} GFLOP/s")
    print(f"{'implementation':<34} {'s/call':>8} {'spread':>7} {'TFLOP':>7} {'GFLOP/s':>8} {'of peak':>8} {'full epoch':>11}")
    for label, t, f in (("re-created official loop", ref, flops[1]), ("pst_fast engine", fast, flops[0])):
        gf = f / t.median / 1e9
        print(f"{label:<34} {t.median:8.2f} {t.spread:7.2f} {f / 1e12:7.2f} {gf:8.1f} {100 * gf / peak:7.1f}% {t.median * full / 60:9.1f} min")
    print(f"speed-up {ratio_text(fast, ref)} (FLOP ratio {flops[1] / flops[0]:.2f}x: the bound for an exact engine on a compute-bound machine)")


if __name__ == "__main__":
    main()
