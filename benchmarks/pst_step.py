"""PST training step: stem + first stage frozen (no gradients, no optimizer work, no backward through the
frozen prefix) against the full backward, eager and compiled, same run, same batch.

The configurations are timed in turns (A B C D A B C D ...) so that a noisy machine slows them alike.
Each row is one optimizer step (forward, loss, backward, step) through PST's own loss hook and the
freeze-aware SGD (no hold-stage transform), at batch 128, channels_last, float32 on CPU; printed with the ratio to the full
eager step and the achieved fraction of the measured float32 matmul peak (FLOPs: forward 1×, backward
2× for trainable blocks, 1× input-gradient only for none — frozen prefixes cost forward only).

Usage: python benchmarks/pst_step.py [--models fastnet,resnet18] [--batch 128] [--frozen-blocks 2] [--no-compile]
"""
import argparse

import torch

from pst_fast.benchmark import Entry, Peaks, entry, matmul_peak_gflops, measure_interleaved, ratio_text
from pst_fast.defenses.pst import PSTParams, StagedTraining
from pst_fast.models import create_model
from pst_fast.models.flops import block_flops
from pst_fast.training import TrainConfig, TrainState
from pst_fast.training.optim import block_param_groups, make_optimizer


def stepper(name: str, frozen: tuple[str, ...], compiled: bool, batch: int, device="cpu"):
    torch.manual_seed(0)
    cfg = TrainConfig(data="unused", model=name, compile=compiled, defense="pst")
    model = create_model(name).to(device, memory_format=torch.channels_last).train()
    opt = make_optimizer(block_param_groups(model, cfg), cfg)
    st = StagedTraining(cfg, PSTParams())
    st.held, st.probe = list(frozen), ()  # held as after detections; a timing makes no detector pass, so no probe
    for b in frozen:
        opt.freeze(b)
    state = TrainState(model=model, optimizer=opt, cfg=cfg)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    fwd = torch.compile(model) if compiled else model

    def step():
        opt.zero_grad(set_to_none=True)
        st.loss(fwd, x, y, state).backward()
        opt.step()

    return step, model


def step_flops(name: str, frozen_blocks: int) -> tuple[tuple[str, ...], dict]:
    """(the frozen prefix, {() or prefix: FLOPs per image of a step}): forward 1×, backward 2× for trainable blocks,
    no input gradient below the first trainable block (frozen prefixes cost their forward only)."""
    model = create_model(name)
    frozen = tuple(list(model.blocks.keys())[:frozen_blocks])
    fl = list(block_flops(model, 32).values())
    k = len(frozen)
    return frozen, {(): 3 * sum(fl) - fl[0], frozen: sum(fl[:k]) + 3 * sum(fl[k:]) - fl[k]}


def suite(quick: bool, peaks: Peaks) -> list[Entry]:
    """``train_step_frozen_prefix``: a PST step of fastnet with the stem and first stage frozen against the full backward,
    both eager, timed in turns; FLOPs the step needs against the matmul peak."""
    batch = 128
    frozen, work = step_flops("fastnet", 2)
    full, fz = measure_interleaved([stepper("fastnet", (), False, batch, peaks.device)[0], stepper("fastnet", frozen, False, batch, peaks.device)[0]],
                                   repeat=3 if quick else 5, warmup=3, device=peaks.device, min_seconds=0.5 if quick else 1.0)
    return [entry("train_step_frozen_prefix", "images/s", batch, fz, full, "full backward (eager)", peaks, "matmul", work[frozen] * batch,
                  f"fastnet, batch {batch}, frozen {'+'.join(frozen)}, PST loss + freeze-aware SGD, eager")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="fastnet,resnet18")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--frozen-blocks", type=int, default=2, help="leading blocks frozen (2 = stem + first stage; PST's default holds 3)")
    ap.add_argument("--min-seconds", type=float, default=1.0, help="each sample loops the step for at least this long")
    args = ap.parse_args()
    peak = matmul_peak_gflops()
    print(f"PST step, batch {args.batch}, float32 CPU, {torch.get_num_threads()} threads; matmul peak {peak:.1f} GFLOP/s")
    for name in args.models.split(","):
        frozen, work = step_flops(name, args.frozen_blocks)
        fl = list(block_flops(create_model(name), 32).values())
        print(f"\n{name}: frozen = {'+'.join(frozen)} ({100 * sum(fl[:len(frozen)]) / sum(fl):.0f}% of the forward FLOPs)")
        print(f"{'configuration':<34} {'ms/step':>9} {'spread':>8} {'GFLOP/s':>8} {'of peak':>8}  vs full eager")
        configs = [(c, fz) for c in ([False] if args.no_compile else [False, True]) for fz in ((), frozen)]
        steps = [stepper(name, fz, c, args.batch)[0] for c, fz in configs]
        timings = measure_interleaved(steps, repeat=args.repeat, warmup=3, min_seconds=args.min_seconds)
        base = timings[0]
        for (compiled, fz), t in zip(configs, timings):
            gf = work[fz] * args.batch / t.median / 1e9
            label = f"{'compiled' if compiled else 'eager'}, {'frozen ' + '+'.join(fz) if fz else 'full backward'}"
            ratio = "1.00x" if t is base else ratio_text(t, base)
            print(f"{label:<34} {1e3 * t.median:9.1f} {1e3 * t.spread:8.1f} {gf:8.1f} {100 * gf / peak:7.1f}%  {ratio}")


if __name__ == "__main__":
    main()
