"""The plot of a sweep (``sweep.png``): each varied parameter's metrics against its value, or the
named variants' metrics across variants or code lengths."""
from __future__ import annotations

from pathlib import Path

from .sweep import Spec


def plot_sweep(rows: list[dict], spec: Spec, path: Path) -> Path:
    """Varied parameters: mAP@50 / mAP against the value (one panel per parameter and code length);
    named variants: against the code length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils import atomic_path

    metrics = [("i2t", "map@50"), ("t2i", "map@50"), ("i2t", "map"), ("t2i", "map")]
    params = list(dict.fromkeys(r.get("param") for r in rows if r.get("param") is not None))
    if params and all(r.get("param") is not None for r in rows):
        panels = [(p, b) for p in params for b in spec.bits]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
        for ax, (p, b) in zip(axes[0], panels):
            sub = [r for r in rows if r.get("param") == p and r["bits"] == b]
            xs = [r["value"] for r in sub]
            numeric = all(isinstance(x, (int, float)) for x in xs)
            pos = list(range(len(xs)))
            for task, metric in metrics:
                ax.plot(pos, [r[task][metric] for r in sub], marker="o",
                        label=f"{'I→T' if task == 'i2t' else 'T→I'} {metric}")
            ax.set_xticks(pos, [f"{x:g}" if numeric else str(x) for x in xs])
            ax.set(title=f"{p.split('.')[-1]}, {b} bits", xlabel=p, ylim=(0, 1))
            ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=7)
    elif len(spec.bits) == 1:  # named variants at one code length: the metrics across variants
        fig, axes = plt.subplots(1, 1, figsize=(max(8.0, 1.3 * len(rows)), 4.0), squeeze=False)
        ax = axes[0, 0]
        pos = list(range(len(rows)))
        for task, metric in metrics:
            ax.plot(pos, [r[task][metric] for r in rows], marker="o",
                    label=f"{'I→T' if task == 'i2t' else 'T→I'} {metric}")
        ax.set_xticks(pos, [r["name"] for r in rows], rotation=15)
        ax.set(title=f"{spec.bits[0]} bits", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
        for ax, task in zip(axes[0], ("i2t", "t2i")):
            for name in dict.fromkeys(r["name"] for r in rows):
                sub = sorted((r for r in rows if r["name"] == name), key=lambda r: r["bits"])
                ax.plot([str(r["bits"]) for r in sub], [r[task]["map@50"] for r in sub], marker="o", label=name)
            ax.set(title=f"{'Image→Text' if task == 'i2t' else 'Text→Image'} mAP@50", xlabel="bits", ylim=(0, 1))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(spec.title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path
