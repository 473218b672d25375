"""Loss / accuracy curves of a run as a PNG (matplotlib, Agg backend, written atomically)."""
from __future__ import annotations

from pathlib import Path

from ..figures import pyplot, save_png


def plot_curves(lines: list[dict], path: str | Path, title: str = "") -> None:
    """``lines``: metrics.jsonl records (epoch, train_loss, train_acc, test_acc, optional 'events')."""
    plt = pyplot()

    ep = [l["epoch"] + 1 for l in lines]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(ep, [l["train_loss"] for l in lines], "o-", ms=3, label="train loss")
    ev = "val" if any("val_acc" in l for l in lines) else "test"
    if any(f"{ev}_loss" in l for l in lines):
        a1.plot([e for e, l in zip(ep, lines) if f"{ev}_loss" in l], [l[f"{ev}_loss"] for l in lines if f"{ev}_loss" in l], "s-", ms=3, label=f"{ev} loss (clean)")
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.legend(), a1.grid(alpha=0.3)
    a2.plot(ep, [100 * l["train_acc"] for l in lines], "o-", ms=3, label="train acc")
    tl = [(e, l[f"{ev}_acc"]) for e, l in zip(ep, lines) if f"{ev}_acc" in l]
    a2.plot([e for e, _ in tl], [100 * a for _, a in tl], "s-", ms=3, label=f"{ev} acc (clean)")
    for e, l in zip(ep, lines):
        for ev in l.get("events", []):
            a2.axvline(e, color="gray", ls=":", lw=1)
            a2.annotate(str(ev)[:24], (e, 5), rotation=90, fontsize=7, color="gray")
    a2.set_xlabel("epoch"), a2.set_ylabel("accuracy (%)"), a2.set_ylim(0, 100), a2.legend(), a2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=100, tight=False)


def plot_trace(trace: list[dict], events: list[dict], path: str | Path, title: str = "", threshold: float | None = None) -> None:
    """Detector traces of a staged run against epochs, a vertical line at each stage transition: the probe's accuracy
    raw and under each view with the training accuracy; the detector value (with its ``threshold``); every block's
    ACM (4×4 pool). ``trace`` rows: {epoch, value, acc, acc/<view>, train-acc, acm4/<block>, ...}."""
    plt = pyplot()

    ep = [t["epoch"] for t in trace]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    panels = ((axes[0], [k for k in trace[0] if k == "acc" or k.startswith("acc/") or k == "train-acc"], "accuracy"),
              (axes[1], ["value"], "detector"),
              (axes[2], [k for k in trace[0] if k.startswith("acm4/")], "ACM, 4x4 pool"))
    for ax, keys, label in panels:
        for k in keys:
            ax.plot(ep, [t[k] if t.get(k) is not None else float("nan") for t in trace], lw=1.2, label=k.split("/")[-1] if "acm" in k else k)
        if keys == ["value"] and threshold is not None:
            ax.axhline(threshold, color="C3", ls="--", lw=1, label="threshold")
        for e in events:
            ax.axvline(e["epoch"], color="gray", ls=":", lw=1)
            ax.annotate(e["stage"], (e["epoch"], 0.02), rotation=90, fontsize=7, color="gray")
        ax.set_xlabel("epoch"), ax.set_ylabel(label), ax.set_ylim(0, 1), ax.grid(alpha=0.3), ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path, tight=False)
