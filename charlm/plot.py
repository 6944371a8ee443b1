"""`charlm plot`: validation and training bpc of one or more runs, against time and characters seen,
the bpc of a run's --eval-also text (dashed) where it has one, and a thin line at each resume that
changed an option or the hardware, which explains a kink in the curves."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from . import files, runs
from .errors import CharLMError, one_line_path
from .fields import said, value_said
from .runs import METRICS, read_metrics

if TYPE_CHECKING:
    from matplotlib.axes import Axes

WIDTH, HEIGHT, DPI = 1200, 500, 100
# A run as drawn: its name, its metrics rows, what its --eval-also scored (`eval_also_named`) and its resumes
Curve = tuple[str, list[dict], str, list[dict]]
SHORT_NAME = 32  # characters of a legend's --eval-also text or run name, a long one cut in the middle
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


def points(rows: list[dict], x_key: str, scale: float, y_key: str) -> list[tuple[float, float]]:
    """(x, y) of the rows that have both (a row of a damaged metrics.jsonl may lack either)."""
    return [(r[x_key] * scale, r[y_key]) for r in rows if r.get(x_key) is not None and r.get(y_key) is not None]


def curves_of(targets: list[str | None]) -> tuple[list[Curve], list[CharLMError]]:
    """The `Curve` of each of `targets` that has curves (its resumes: `runs.read_resumes`), and why each of the
    others has none (a run killed or still before its first evaluation, a model folder): one such run among
    five being compared does not stop the other four being drawn. A run named twice (by its name and its
    folder) is drawn once. Refused only where none has curves."""
    curves, left_out, drawn = [], [], set()
    for target in targets:
        try:
            run_dir = runs.resolve(target, prefer=runs.LATEST).parent
            if run_dir.resolve() not in drawn:
                curves.append((run_dir.name, curve_rows(run_dir), eval_also_named(run_dir), runs.read_resumes(run_dir)))
                drawn.add(run_dir.resolve())
        except CharLMError as e:
            left_out.append(e)
    if not curves and len(left_out) == 1:
        raise left_out[0]
    if not curves:
        raise CharLMError(f"none of the {len(left_out)} runs has curves to plot: {'; '.join(map(str, left_out))}")
    return curves, left_out


def eval_also_named(run_dir: Path) -> str:
    """What the run in `run_dir` scored with --eval-also, for the legend, from its run.json (which keeps
    the text's absolute path or the folder of the run whose held-out text it is): the file's name or
    "RUN held-out", cut in the middle past SHORT_NAME characters; "" where the record is lost or damaged."""
    info = runs.read_run_info(run_dir) or {}
    config = info.get("config")
    value = config.get("eval_also") if isinstance(config, dict) else None
    if not isinstance(value, str) or not value:
        return ""
    from .runtext import names_text  # torch's: only for a run that has the curve

    path = Path(value)
    if runs.is_checkpoint_name(path) or (path.is_dir() and not names_text(value)):  # a run: its held-out text
        run = path if path.is_dir() else path.parent
        return f"{shortened(run.name)} held-out"
    return shortened(path.name)


def shortened(name: str) -> str:
    """`name`, cut in the middle to SHORT_NAME characters where it is longer: its start and its end
    (a run's date, a file's suffix) both tell runs apart."""
    if len(name) <= SHORT_NAME:
        return name
    start = SHORT_NAME // 2
    return f"{name[:start]}…{name[len(name) - (SHORT_NAME - start - 1) :]}"


def curve_rows(run_dir: Path) -> list[dict]:
    """The metrics rows of the run in `run_dir`, refused where it has none to draw."""
    try:
        rows = read_metrics(run_dir)
    except OSError as e:  # not the --output's fault, as the command's catch-all would say
        raise files.cannot_read(run_dir / METRICS, e) from None
    if not rows:
        raise CharLMError(
            f"{one_line_path(run_dir)}: no curves to plot ({METRICS} has no rows; a model folder or a lone .pt keeps "
            "none): name a run folder that charlm train wrote (`charlm runs` lists them)"
        )
    return rows


def resume_marks(rows: list[dict], resumes: list[dict], x_key: str, scale: float) -> list[tuple[float, str]]:
    """(x, label) of each resume: at its step's metrics row (the last one before it, a checkpoint's step
    being an evaluation's), labelled with what it set, `resumed, --lr 0.001` or `resumed, on cuda bf16`."""
    marks = []
    for record in resumes:
        before = [r for r in rows if isinstance(r.get("step"), int) and r["step"] <= record["step"]]
        x = max(before, key=lambda r: r["step"]).get(x_key) if before else None
        if not isinstance(x, (int, float)):
            continue
        set_to = [said(name, metavar=value_said(change["now"])) for name, change in record["changed"].items()]
        set_to += [f"on {record['hardware']['now']}"] if "hardware" in record else []
        marks.append((x * scale, ", ".join(["resumed", *set_to])))
    return marks


def plot_runs(curves: list[Curve], output: Path) -> Path:
    """Draw `curves` (`curves_of`'s) into the PNG `output`, replaced whole."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharLMError("charlm plot needs matplotlib: pip install 'charlm[plot]'") from None
    plt.rcParams["font.family"] = ["sans-serif", *installed_cjk_fonts()]  # a Chinese run name's characters
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, sharey=True)
    for (label, x_key, scale), ax in zip(
        (("training time (minutes)", "elapsed", 1 / 60), ("characters seen (millions)", "chars", 1e-6)), axes
    ):
        for curve, color in zip(curves, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10):
            draw_curve(ax, curve, x_key, scale, color)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("bits per character")
    axes[0].set_title("against time")
    axes[1].set_title("against characters seen")
    axes[1].legend(fontsize=8, loc="upper right")
    fig.suptitle("charlm runs (★ best validation)")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    plt.close(fig)
    output = Path(output)
    files.replace_files({output: png.getvalue()})  # whole or not at all; an OSError says why
    return output


def draw_curve(ax: Axes, curve: Curve, x_key: str, scale: float, color: str) -> None:
    """One run's curves (`curves_of`'s) on `ax` against `x_key`: training bpc faint, validation bpc with its
    best starred, the --eval-also text's dashed, and a thin line at each resume, its label along it at the top."""
    name, rows, also_named, resumes = curve
    train, val, also = (points(rows, x_key, scale, y_key) for y_key in ("train_bpc", "val_bpc", "eval_also_bpc"))
    if train:
        ax.plot(*zip(*train), color=color, alpha=0.35, linewidth=1, label=f"{name} train")
    if val:
        ax.plot(*zip(*val), color=color, marker="o", markersize=3, linewidth=1.8, label=f"{name} validation")
        best = min(val, key=lambda point: point[1])
        ax.plot(*best, marker="*", markersize=14, color=color, markeredgecolor="black", linestyle="none")
        ax.annotate(f"{best[1]:.3f}", best, textcoords="offset points", xytext=(6, 6), fontsize=8)
    if also:
        also_said = f"{name} --eval-also {also_named}".rstrip()  # the text it scored: a file, a run's held-out
        ax.plot(*zip(*also), color=color, marker="s", markersize=3, linestyle="--", label=also_said)
    for x, resumed in resume_marks(rows, resumes, x_key, scale):
        ax.axvline(x, color=color, linestyle=":", linewidth=0.8, alpha=0.7)
        ax.text(
            x,
            0.98,
            resumed,
            transform=ax.get_xaxis_transform(),
            rotation=90,
            fontsize=7,
            color=color,
            ha="right",
            va="top",
        )
