"""`charlm plot`: validation and training bpc of one or more runs, against time and characters seen,
and the bpc of a run's --eval-also text (dashed) where it has one."""

from __future__ import annotations

from pathlib import Path

from .errors import CharLMError
from .reporting import read_metrics

WIDTH, HEIGHT, DPI = 1200, 500, 100
# Fonts with Chinese characters, tried after matplotlib's own for a run name it lacks glyphs for.
CJK_FONTS = (
    "WenQuanYi Micro Hei",
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
)


def installed_cjk_fonts() -> list[str]:
    from matplotlib import font_manager

    present = {font.name for font in font_manager.fontManager.ttflist}
    return [name for name in CJK_FONTS if name in present]


def plot_runs(run_dirs: list[Path], output: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharLMError("charlm plot needs matplotlib: pip install 'charlm[plot]'") from None
    runs = []
    for run_dir in run_dirs:
        rows = read_metrics(run_dir)
        if not rows:
            raise CharLMError(f"{run_dir}: no metrics.jsonl rows; is it a charlm run folder?")
        runs.append((Path(run_dir).name, rows))
    plt.rcParams["font.family"] = ["sans-serif", *installed_cjk_fonts()]  # a Chinese run name's characters
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, sharey=True)
    for (label, x_key, scale), ax in zip(
        (("training time (minutes)", "elapsed", 1 / 60), ("characters seen (millions)", "chars", 1e-6)), axes
    ):
        for (name, rows), color in zip(runs, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10):
            train = [(r[x_key] * scale, r["train_bpc"]) for r in rows if r.get("train_bpc") is not None]
            val = [(r[x_key] * scale, r["val_bpc"]) for r in rows if r.get("val_bpc") is not None]
            also = [(r[x_key] * scale, r["eval_also_bpc"]) for r in rows if r.get("eval_also_bpc") is not None]
            if train:
                ax.plot(*zip(*train), color=color, alpha=0.35, linewidth=1, label=f"{name} train")
            if val:
                ax.plot(*zip(*val), color=color, marker="o", markersize=3, linewidth=1.8, label=f"{name} validation")
                best = min(val, key=lambda point: point[1])
                ax.plot(*best, marker="*", markersize=14, color=color, markeredgecolor="black", linestyle="none")
                ax.annotate(f"{best[1]:.3f}", best, textcoords="offset points", xytext=(6, 6), fontsize=8)
            if also:
                ax.plot(*zip(*also), color=color, marker="s", markersize=3, linestyle="--", label=f"{name} --eval-also")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("bits per character")
    axes[0].set_title("against time")
    axes[1].set_title("against characters seen")
    axes[1].legend(fontsize=8, loc="upper right")
    fig.suptitle("charlm runs (★ best validation)")
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=DPI)
    plt.close(fig)
    return output
