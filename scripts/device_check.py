"""The device check: pst_fast's GPU path, run once and unattended on a CUDA machine, or the same steps shrunk to a CPU
mode (under 3 minutes) where there is no CUDA, so that the script cannot rot.

    scripts/device_check.sh OUT          # installs pst_fast (pip install --no-deps --no-build-isolation -e .), then this
    python scripts/device_check.py OUT [--mode auto|cuda|cpu] [--only a,b] [--budget SECONDS]

Checks (each in its own process, with a time limit; on CUDA the correctness and end-to-end checks run side by side, the
timed ones alone, one after another; in CPU mode all run one after another):
  triton_kernels     every Triton kernel against its torch reference: the shapes and tolerances of the tests'
                     interpreter runs (tests/test_augment.py, test_pgd.py, test_sal.py); CPU mode: under TRITON_INTERPRET=1
  compiled_ops       the torch.library ops (augment_batch, pgd_step, pgd_step_, sal_project_, sal_sharpness) under
                     torch.compile(fullgraph=True) against eager / the reference (CPU mode: the aot_eager backend)
  imagenet_224       the ImageNet sample (.device-data/, see scripts/device_data.sh) at 224 px: an EM poison made on the
                     tree, then resnet18-imagenet trained 2 epochs through the fallback loader with the poison added in the
                     pipeline (and DALI's mixed decoding when nvidia.dali imports); CPU mode: 64 px, generated JPEGs if the
                     sample is absent
  cifar10_mini       a 2-epoch training of fastnet on the embedded cifar10-mini
  quickstart_cell    one quickstart-sized sweep cell: the EM poison (5 rounds) x standard training, 8 epochs, report
  train_step         ResNet-18 train step: eager float32 NCHW, bf16 channels_last, torch.compile + bf16 (CUDA graphs on
                     CUDA), and the PST frozen-prefix step against the full backward, same run
  em_sal             an EM round (engine in float32 and in bf16) and an exact SAL round of ResNet-18 at CIFAR size, engine vs
                     the re-created official loops, same run
  bench_quick        pst-fast bench --quick --device cuda --json OUT/bench.json (every entry: same-run baseline and ratio,
                     fraction of the measured peaks); CPU mode: --only augment,pgd_step

Writes OUT/device_check.json (one record per check: status ok|skipped|failed|timeout|not run, seconds, rows, notes, error),
OUT/device_check.md (the tables), OUT/device_check.log (every check's output) and OUT/bench.json; rewritten after every
check, so a run cut short keeps what finished. Exits 1 when a check did not pass.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / ".device-data" / "imagenet-sample-100.tar.gz"
# name -> (seconds allowed on CUDA, in CPU mode, runs side by side with the other untimed checks on CUDA)
CHECKS = {
    "triton_kernels": (240, 150, True),
    "compiled_ops": (240, 150, True),
    "imagenet_224": (240, 150, True),
    "cifar10_mini": (180, 150, True),
    "quickstart_cell": (240, 150, True),
    "train_step": (200, 150, False),
    "em_sal": (150, 150, False),
    "bench_quick": (240, 150, False),
}


# ---------------------------------------------------------------- the checks (each runs in a child process)

def cli(*args: str) -> None:
    """``pst-fast ARGS`` in this process; a non-zero exit is a failure."""
    from pst_fast.cli import main

    if (rc := main([str(a) for a in args])) != 0:
        raise RuntimeError(f"pst-fast {' '.join(map(str, args))} exited {rc}")


def tests_module(name: str):
    sys.path.insert(0, str(ROOT / "tests"))
    return __import__(name)


def check_triton_kernels(ctx) -> dict:
    from pst_fast.backend import triton_available

    cuda = ctx["cuda"]
    device = "cuda" if cuda else "cpu"  # CPU mode: the parent set TRITON_INTERPRET=1 and PST_FAST_BACKEND=triton
    if not cuda and not triton_available():
        return {"status": "skipped", "notes": ["triton is not installed here (CPU mode)"]}
    aug, pgd, sal = (tests_module(m) for m in ("test_augment", "test_pgd", "test_sal"))
    runs = [("augment_batch (_augment_kernel)", lambda n: aug.triton_matches_reference(device, n), aug.CASES[:3] + aug.CASES[-3:]),
            ("pgd_step / pgd_step_ (_linf_kernel, _l2_kernel)", lambda n: pgd.triton_matches_reference(device, n), range(12)),
            ("sal_project_ / sal_sharpness (_project_kernel, _sharpness_kernel)", lambda n: sal.triton_matches_reference(device, n), sal.ROWS)]
    rows = []
    for name, run, cases in runs:
        cases = list(cases) if cuda else list(cases)[-1:]  # the interpreter is slow: one case each in CPU mode
        t0 = time.perf_counter()
        run(cases)
        rows.append({"kernel": name, "cases": len(cases), "against": "torch reference on the CPU, the tests' tolerances",
                     "where": "CUDA" if cuda else "TRITON_INTERPRET=1", "seconds": round(time.perf_counter() - t0, 1)})
    return {"rows": rows}


def check_compiled_ops(ctx) -> dict:
    import torch

    device, backend = ("cuda", "inductor") if ctx["cuda"] else ("cpu", "aot_eager")
    aug, pgd, sal = (tests_module(m) for m in ("test_augment", "test_pgd", "test_sal"))
    from pst_fast.ops.sal import sal_project_, sal_project_reference, sal_sharpness, sal_sharpness_reference

    def sal_ops():
        w, w0 = sal.project_case(sal.ROWS[3], 1)
        l0, lmax, lmin = torch.rand(300), torch.rand(7, 300), torch.rand(7, 300)

        def both(w, w0, l0, lmax, lmin):
            return sal_project_(w, w0, 0.05) * 1.0, sal_sharpness(l0, lmax, lmin) * 1.0

        moved = [t.to(device) for t in (w.clone(), w0, l0, lmax, lmin)]
        ratio, sharp = torch.compile(both, fullgraph=True, backend=backend)(*moved)
        ref_w = w.clone()
        torch.testing.assert_close(ratio.cpu(), sal_project_reference(ref_w, w0, 0.05), rtol=1e-5, atol=0)
        torch.testing.assert_close(moved[0].cpu(), ref_w, rtol=1e-5, atol=1e-6)
        assert torch.equal(sharp.cpu(), sal_sharpness_reference(l0, lmax, lmin))

    rows = []
    for name, run in (("augment_batch", lambda: aug.under_torch_compile(device, backend)),
                      ("pgd_step_ x2 + pgd_step, L∞", lambda: pgd.under_torch_compile("linf", device, backend)),
                      ("pgd_step_ x2 + pgd_step, L2", lambda: pgd.under_torch_compile("l2", device, backend)),
                      ("sal_project_ + sal_sharpness", sal_ops)):
        torch._dynamo.reset()
        t0 = time.perf_counter()
        run()
        rows.append({"op": name, "compile": f"torch.compile(fullgraph=True, backend={backend})", "device": device,
                     "seconds": round(time.perf_counter() - t0, 1)})
    return {"rows": rows}


def imagenet_tree(ctx) -> tuple[Path, str]:
    """The ImageNet sample extracted to the scratch folder, or in CPU mode without it a generated tree of mixed JPEGs."""
    if SAMPLE.is_file():
        with tarfile.open(SAMPLE) as tar:
            tar.extractall(ctx["scratch"], filter="data")
        return Path(ctx["scratch"]) / "imagenet-sample-100", f"{SAMPLE.name} (100 ImageNet JPEGs, 95..1067 px, 2 grayscale)"
    if ctx["cuda"]:
        raise RuntimeError(f"{SAMPLE} is missing: run scripts/device_data.sh where ../shared/data is, and carry .device-data")
    conftest = tests_module("conftest")
    root = conftest.write_mixed_jpeg_tree(Path(ctx["scratch"]) / "mixed")
    return root, "generated JPEGs (sample absent): 36 train / 12 test, 95..1067 px, grayscale, CMYK, progressive"


def check_imagenet_224(ctx) -> dict:
    from pst_fast.data.folder_loader import dali_available

    cuda = ctx["cuda"]
    tree, what = imagenet_tree(ctx)
    size, batch = (224, 50) if cuda else (64, 12)
    out = Path(ctx["scratch"])
    poison_args = ["--attack", "em", "--max-rounds", "2", "--batch-size", batch] if cuda else ["--attack", "cuda"]
    t0 = time.perf_counter()
    cli("poison", *poison_args, "--data", tree, "--image-size", size, "--device", ctx["device"], "--out", out / "poison")
    poison_seconds = time.perf_counter() - t0
    rows = [{"step": f"pst-fast poison {' '.join(poison_args[:2])} at {size} px", "loader": "fallback (decode once)",
             "result": json.loads((out / "poison" / "meta.json").read_text())["per"] + "-wise δ", "seconds": round(poison_seconds, 1)}]
    loaders = ["fallback"] + (["dali"] if dali_available() else [])
    for loader in loaders:
        run = out / f"run-{loader}"
        t0 = time.perf_counter()
        cli("train", "--data", tree, "--image-size", size, "--model", "resnet18-imagenet", "--epochs", 2, "--batch-size", batch,
            "--eval-batch-size", batch, "--poison", out / "poison", "--loader", loader, "--device", ctx["device"], "--out", run,
            "--quiet", *([] if cuda else ["--max-steps", 2]))
        s = json.loads((run / "summary.json").read_text())
        assert s["loader"] == loader and s["poisoned"] and s["device"].startswith(ctx["device"]), s
        rows.append({"step": "train resnet18-imagenet, 2 epochs, poison in the pipeline", "loader": loader + (" (mixed decoding)" if cuda and loader == "dali" else ""),
                     "result": f"test acc {s['final_test_acc']:.3f}, {s['images_per_second']:.0f} img/s", "seconds": round(time.perf_counter() - t0, 1)})
    notes = [f"data: {what}"]
    if "dali" not in loaders:
        notes.append("DALI: nvidia.dali does not import here; its mixed (GPU) decoding is not measured")
    return {"rows": rows, "notes": notes}


def check_cifar10_mini(ctx) -> dict:
    run = Path(ctx["scratch"]) / "c10"
    model, extra = ("fastnet", []) if ctx["cuda"] else ("fastnet-small", ["--batch-size", 256, "--max-steps", 3])
    t0 = time.perf_counter()
    cli("train", "--data", "cifar10-mini", "--model", model, "--epochs", 2, "--device", ctx["device"], "--out", run, "--quiet", *extra)
    s = json.loads((run / "summary.json").read_text())
    assert s["epochs"] == (2 if ctx["cuda"] else 1) and s["device"].startswith(ctx["device"]), s
    what = "2 epochs" if ctx["cuda"] else "3 steps (CPU mode)"
    return {"rows": [{"run": f"train {model}, {what}, cifar10-mini", "final test acc": round(s["final_test_acc"], 4),
                      "images/s": round(s["images_per_second"]), "amp": s["config"]["amp"], "seconds": round(time.perf_counter() - t0, 1)}]}


def check_quickstart_cell(ctx) -> dict:
    scratch = Path(ctx["scratch"])
    if ctx["cuda"]:  # the quickstart's EM cell: 5 rounds (resnet18 surrogate on CUDA), fastnet, 8 epochs
        attack, model, train = "[attacks.em]\nmax_rounds = 5", "fastnet", "epochs = 8"
    else:
        attack, model, train = "[attacks.lsp]", "fastnet-small", "epochs = 1\nmax_steps = 2\nbatch_size = 256"
    spec = scratch / "cell.toml"
    spec.write_text(f'[sweep]\ndatasets = ["cifar10-mini"]\nmodels = ["{model}"]\nseeds = [0]\nmetrics = ["accuracy"]\n'
                    f'[train]\n{train}\n{attack}\n[defenses.standard]\n[resources]\nworkers = 1\n')
    t0 = time.perf_counter()
    cli("sweep", "run", spec, "--db", scratch / "cell.db")
    cli("report", scratch / "cell.db", "--out", scratch / "report")
    from pst_fast.sweep.report import records
    from pst_fast.sweep.store import Store

    recs = records(Store(scratch / "cell.db"))
    assert recs and all(r["status"] == "done" for r in recs), recs
    return {"rows": [{"cell": f"{r['attack']} x {r['defense']}, {r['model']}", "final test acc": round(r["final_test_acc"], 4),
                      "seconds": round(time.perf_counter() - t0, 1)} for r in recs]}


def check_train_step(ctx) -> dict:

    from pst_fast.benchmark import measure_interleaved, ratio_text
    from pst_fast.benchmarks import pst_step, train_step
    from pst_fast.models import model_info

    cuda, device = ctx["cuda"], ctx["device"]
    model, batch = ("resnet18", 256) if cuda else ("fastnet-small", 32)
    modes = ["reference", "eager-bf16", "compiled-bf16"] if cuda else ["reference", "eager-bf16"]
    steps = [train_step.make_step(model, m, batch, device) for m in modes]
    frozen, work = pst_step.step_flops(model, 2)
    steps += [pst_step.stepper(model, (), False, batch, device)[0], pst_step.stepper(model, frozen, False, batch, device)[0]]
    names = modes + ["pst-full-backward", f"pst-frozen-{'+'.join(frozen)}"]
    timings = measure_interleaved(steps, repeat=3, warmup=3 if cuda else 1, device=device, min_seconds=0.3 if cuda else 0.02)
    t = dict(zip(names, timings))
    flops = 3 * model_info(model)["flops_per_image"] * batch
    peaks = ctx["peaks"]
    rows = []
    for name in names:
        kind = "matmul-bf16" if "bf16" in name else "matmul"
        base = t["pst-full-backward"] if name.startswith("pst-frozen") else t["reference"]
        work_ = work[frozen if name.startswith("pst-frozen") else ()] * batch if name.startswith("pst") else flops
        rows.append({"mode": name, "images/s": round(batch / t[name].median), "spread": f"±{100 * t[name].spread / t[name].median:.0f}%",
                     "vs": "baseline" if t[name] is base else f"{ratio_text(t[name], base)} vs {'full backward' if base is not t['reference'] else 'reference'}",
                     "of peak": f"{100 * peaks.fraction(kind, work_ / t[name].median):.1f}% of {kind}"})
    notes = [f"{model}, batch {batch}, SGD nesterov, {device}; reference = eager float32 NCHW; compiled = torch.compile "
             f"mode={'reduce-overhead (CUDA graphs)' if cuda else 'default'}; PST rows: eager float32 channels_last"]
    if not cuda:
        notes.append("CPU mode: no torch.compile row (tests/test_train.py covers the compiled step on CPU)")
    return {"rows": rows, "notes": notes}


def check_em_sal(ctx) -> dict:

    import torch

    from pst_fast.attacks.em import EMParams
    from pst_fast.benchmark import ratio_text
    from pst_fast.benchmarks import em_generation, sal_epoch

    cuda, device, peaks = ctx["cuda"], ctx["device"], ctx["peaks"]
    model, n, batch, repeat = ("resnet18", 2048, 512, 2) if cuda else ("fastnet-small", 32, 16, 1)
    torch.manual_seed(0)
    full, sub = em_generation.load_subset("cifar10-mini", n)
    rows = []
    for amp in ("off", "on"):
        p = EMParams(model=model, batch_size=batch, max_rounds=1, stop_acc=2.0, amp=amp,
                     **({} if cuda else {"steps": 2, "train_steps": 2}))
        base, fast, flops = em_generation.time_rounds(full, sub, p, n, repeat, device)
        kind = em_generation.engine_peak(p, device)
        rows.append({"measure": f"EM round, engine amp {amp}", "pst_fast s": round(fast.median, 2), "official loop s": round(base.median, 2),
                     "ratio": ratio_text(fast, base), "of peak": f"{100 * peaks.fraction(kind, flops / fast.median):.1f}% of {kind}",
                     "setup": f"{model}, {n} images, batch {batch}, {p.steps} PGD steps, M={p.train_steps}"})
    images, sal_batch = (256, 128) if cuda else (32, 16)
    fast, ref, flops = sal_epoch.time_sal(model, "cifar10-mini", images, 1, sal_batch, repeat, device)
    rows.append({"measure": "SAL exact round", "pst_fast s": round(fast.median, 2), "official loop s": round(ref.median, 2),
                 "ratio": ratio_text(fast, ref), "of peak": f"{100 * peaks.fraction('matmul', flops[0] / fast.median):.1f}% of matmul",
                 "setup": f"{model}, 1 round over {images} images, batch {sal_batch}, float32; FLOP ratio {flops[1] / flops[0]:.2f}x"})
    return {"rows": rows, "notes": ["official loops: eager float32 as published (host noise bank for EM, deep copies per layer "
                                    "for SAL); ratio = official time / pst_fast time, refused when the spreads overlap"]}


def check_bench_quick(ctx) -> dict:
    out = Path(ctx["out"]) / "bench.json"
    cli("bench", "--quick", "--device", ctx["device"], "--json", out, *([] if ctx["cuda"] else ["--only", "augment,pgd_step"]))
    entries = json.loads(out.read_text())
    assert entries and all(e["baseline"] > 0 and e["peak_fraction"] > 0 for e in entries), entries
    rows = [{"benchmark": e["name"], "pst_fast": f"{e['value']:,.0f} {e['unit']} ±{100 * e['spread']:.0f}%",
             "baseline (same run)": f"{e['baseline']:,.0f} ±{100 * e['baseline_spread']:.0f}% ({e['baseline_name']})",
             "ratio": "n/a (spread > difference)" if e["ratio"] is None else f"{e['ratio']:.2f}x",
             "of peak": f"{100 * e['peak_fraction']:.1f}% of {e['peak']}", "setup": e["setup"]} for e in entries]
    unresolved = [e["name"] for e in entries if e["ratio"] is None]
    return {"rows": rows, "notes": [f"no ratio (spreads overlap the difference): {', '.join(unresolved)}"] if unresolved else []}


def run_child(name: str, ctx: dict, result_path: Path) -> None:
    """Run check ``name`` here and write {status, rows, notes, error} to ``result_path``."""
    import torch

    from pst_fast.benchmark import Peaks

    ctx["cuda"] = ctx["mode"] == "cuda"
    ctx["device"] = "cuda" if ctx["cuda"] else "cpu"
    if name in ("train_step", "em_sal"):
        ctx["peaks"] = Peaks.measure(ctx["device"])
    torch.manual_seed(0)
    record = {"status": "ok", "rows": [], "notes": []}
    try:
        record.update(globals()[f"check_{name}"](ctx))
    except BaseException as e:  # noqa: BLE001  (the record says what failed; the parent decides the exit code)
        record.update(status="failed", error=f"{type(e).__name__}: {str(e)[:2000]}")
        traceback.print_exc()
    result_path.write_text(json.dumps(record))


# ---------------------------------------------------------------- the parent: scheduling, records, tables

def environment(mode: str) -> dict:
    import torch

    env = {"mode": mode, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(), "host": platform.node()}
    with contextlib.suppress(ImportError):
        import triton

        env["triton"] = triton.__version__
    if mode == "cuda":
        env["device"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def markdown(env: dict, records: dict) -> str:
    head = ", ".join(f"{k} {v}" for k, v in env.items())
    lines = [f"# pst_fast device check ({env['mode']} mode)", "", head, "", "| check | status | seconds | note |", "|---|---|---|---|"]
    for name, r in records.items():
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '')} | {(r.get('error') or '; '.join(r.get('notes', [])))[:300]} |")
    for name, r in records.items():
        if r.get("rows"):
            cols = list(r["rows"][0])
            lines += ["", f"## {name}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(str(row.get(c, "")) for c in cols) + " |" for row in r["rows"]]
            lines += [f"- {n}" for n in r.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="directory for device_check.json, device_check.md, device_check.log and bench.json")
    ap.add_argument("--mode", default="auto", choices=["auto", "cuda", "cpu"], help="auto: cuda when torch sees a GPU")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(CHECKS))
    ap.add_argument("--budget", type=float, default=0, help="seconds from the start of device_check.sh (its install included) to the "
                    "end of the last check: default 470 on CUDA, 170 in CPU mode; a check still running then is stopped (timeout), "
                    "one not started is recorded as not run")
    ap.add_argument("--run", help=argparse.SUPPRESS)      # internal: run one check in this process
    ap.add_argument("--ctx", help=argparse.SUPPRESS)      # internal: the check's context (JSON)
    ap.add_argument("--result", help=argparse.SUPPRESS)   # internal: where the child writes its record
    a = ap.parse_args()
    if a.run:
        run_child(a.run, json.loads(a.ctx), Path(a.result))
        return 0

    import torch

    mode = a.mode if a.mode != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if mode == "cuda" and not torch.cuda.is_available():
        print("device_check: --mode cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    names = [n for n in (a.only.split(",") if a.only else CHECKS) if n]
    if unknown := [n for n in names if n not in CHECKS]:
        print(f"device_check: unknown check(s) {', '.join(unknown)}; expected some of {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = a.budget or (470 if mode == "cuda" else 170)
    t_start = time.perf_counter() - max(0.0, time.time() - float(os.environ.get("PST_FAST_CHECK_START", time.time())))
    env = environment(mode)
    records = {n: {"status": "not run", "rows": [], "notes": []} for n in names}
    log = open(out / "device_check.log", "w")
    work = Path(tempfile.mkdtemp(prefix="pst-fast-device-check-"))

    def save() -> None:
        from pst_fast.io import atomic_write_text

        env["seconds"] = round(time.perf_counter() - t_start, 1)
        atomic_write_text(out / "device_check.json", json.dumps({"environment": env, "checks": records}, indent=1) + "\n")
        atomic_write_text(out / "device_check.md", markdown(env, records))

    def start(name: str):
        scratch = work / name
        scratch.mkdir()
        child_env = dict(os.environ, PYTHONUNBUFFERED="1")
        child_env.pop("TRITON_INTERPRET", None)
        if name == "triton_kernels" and mode == "cpu":
            child_env.update(TRITON_INTERPRET="1", PST_FAST_BACKEND="triton")
        ctx = {"mode": mode, "scratch": str(scratch), "out": str(out)}
        logf = open(scratch / "log", "w")
        proc = subprocess.Popen([sys.executable, __file__, str(out), "--run", name, "--ctx", json.dumps(ctx), "--result", str(scratch / "result.json")],
                                stdout=logf, stderr=subprocess.STDOUT, env=child_env, cwd=scratch, start_new_session=True)
        limit = CHECKS[name][0 if mode == "cuda" else 1]
        return {"proc": proc, "log": logf, "t0": time.perf_counter(), "limit": limit}

    def finish(name: str, job: dict, timed_out: bool) -> None:
        job["log"].close()
        scratch = work / name
        result = scratch / "result.json"
        rec = json.loads(result.read_text()) if result.is_file() else {"status": "failed", "rows": [], "notes": [],
                                                                        "error": f"the check's process exited {job['proc'].returncode}"}
        if timed_out:
            rec.update(status="timeout", error=f"stopped after {time.perf_counter() - job['t0']:.0f} s (its limit {job['limit']} s, the "
                                                 f"budget {budget:.0f} s from the start)")
        rec["seconds"] = round(time.perf_counter() - job["t0"], 1)
        records[name] = rec
        log.write(f"===== {name}: {rec['status']} in {rec['seconds']} s\n{(scratch / 'log').read_text()}\n")
        log.flush()
        print(f"device_check: {name}: {rec['status']} in {rec['seconds']} s" + (f" ({rec['error'][:200]})" if rec.get("error") else ""), flush=True)
        save()

    def wait_all(jobs: dict) -> None:
        while jobs:
            for name, job in list(jobs.items()):
                left = job["limit"] - (time.perf_counter() - job["t0"])
                if job["proc"].poll() is None and left > 0 and time.perf_counter() - t_start < budget:
                    continue
                timed_out = job["proc"].poll() is None
                if timed_out:  # the check and whatever it started (sweep workers, DataLoader workers)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(job["proc"].pid, signal.SIGKILL)
                    job["proc"].wait()
                finish(name, job, timed_out)
                del jobs[name]
            time.sleep(0.5)

    save()
    side_by_side = [n for n in names if CHECKS[n][2] and mode == "cuda"]
    alone = [n for n in names if n not in side_by_side]
    wait_all({n: start(n) for n in side_by_side})
    for name in alone:
        if time.perf_counter() - t_start > budget:
            records[name]["notes"] = [f"not started: the {budget:.0f} s budget was spent"]
            continue
        wait_all({name: start(name)})
    save()
    log.close()
    shutil.rmtree(work, ignore_errors=True)
    failed = [n for n, r in records.items() if r["status"] not in ("ok", "skipped")]
    print(f"device_check: {len(names) - len(failed)}/{len(names)} checks ok in {time.perf_counter() - t_start:.0f} s ({mode} mode) -> "
          f"{out / 'device_check.md'}" + (f"; not ok: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
