"""Pictures of SAL and UD: per-run SAL heatmaps (layers × epochs) and a UD bar chart (matplotlib, Agg, atomic)."""
from __future__ import annotations

from pathlib import Path

from ..data import describe
from ..figures import pyplot, save_png


def _short(layer: str) -> str:
    return layer.removeprefix("blocks.").removesuffix(".weight")


def plot_sal_grid(records: list, titles: list[str], path, beta: float | None = None) -> Path:
    """One heatmap per record (rows: layers shallow→deep, columns: measured epochs), shared colour scale;
    with ``beta``, cells above it carry a cyan dot (the layers λ(t) counts)."""
    plt = pyplot()
    mats = [r.matrix().T for r in records]
    vmax = max(float(m.max()) for m in mats if m.size) if any(m.size for m in mats) else 1.0
    layers = records[0].layers
    fig, axes = plt.subplots(1, len(records), figsize=(1.6 + 2.6 * len(records), 0.9 + 0.22 * len(layers)), squeeze=False)
    for ax, rec, m, title in zip(axes[0], records, mats, titles):
        im = ax.imshow(m, aspect="auto", cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
        if beta is not None and m.size:
            rows, cols = (m > beta).nonzero()
            ax.scatter(cols, rows, s=9, c="cyan", marker="o", linewidths=0)
        ax.set_xticks(range(len(rec.epochs)), [str(e + 1) for e in rec.epochs], fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.set_yticks(range(len(layers)), [_short(l) for l in layers] if ax is axes[0][0] else [""] * len(layers), fontsize=7)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="SAL" + (f" (dot: > β = {beta:.3g})" if beta is not None else ""))
    return save_png(fig, path)


def plot_sal(record, path) -> Path:
    """The SAL heatmap of one run."""
    return plot_sal_grid([record], [f"SAL: {describe(record.meta.get('data', ''))} ({record.meta.get('defense')})"], path)


def plot_ud(report: dict, path) -> Path:
    """Bar chart of UD per poisoned run, with the clean level (1.0) marked."""
    plt = pyplot()
    names = [Path(r["run"]).name for r in report["runs"]]
    uds = [r["ud"] for r in report["runs"]]
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(names), 3.2))
    ax.bar(range(len(names)), uds, color=["tab:red" if r["poisoned"] else "tab:blue" for r in report["runs"]])
    ax.axhline(1.0, color="gray", ls="--", lw=1, label="clean = 1")
    for i, u in enumerate(uds):
        ax.annotate(f"{u:.2f}", (i, u), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("UD (lower = more unlearnable)")
    ax.set_ylim(0, max([1.3] + [u * 1.15 for u in uds]))
    ax.set_title(f"Unlearnable distance (β = {report['beta']:.3g})", fontsize=9)
    ax.legend(fontsize=8)
    return save_png(fig, path)


