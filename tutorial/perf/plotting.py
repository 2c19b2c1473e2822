"""Figures for the course: quantization error histograms and throughput against the copy
roofline; and tables that a notebook shows as tables.

Figures are built with `matplotlib.figure.Figure` directly, not pyplot: no GUI backend is
ever touched (safe headless, Agg), nothing is shown, and notebooks display the returned Figure
once. Every function returns the Figure; [`save`][] writes it as PNG, cropped to what is
drawn. Figures are at most 7.5 inches wide: the course website's text column, about 600 pixels,
shows their 100 dpi images at three quarters of their size or more, so their text stays legible.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

_Y_LABELS = {"tbps": "throughput (TB/s)", "tflops": "throughput (TFLOPS)",
             "fraction_of_copy": "fraction of copy bandwidth"}
_X_LABELS = {"bytes": "bytes moved (logical)", "elements": "elements", "flops": "FLOPs per call"}


def error_histogram(errors: dict[str, np.ndarray], *, title: str, xlabel: str = "absolute error",
                    bins: int = 60) -> Figure:
    """One step line per method over shared log-spaced bins; exact zeros are counted in the legend.

    Zeros cannot sit on a log axis, so they are left out of the bins and reported instead.
    """
    flat = {name: np.abs(np.asarray(e, dtype=np.float64).ravel()) for name, e in errors.items()}
    positive = np.concatenate([e[e > 0] for e in flat.values()] or [np.empty(0)])
    positive = positive[np.isfinite(positive)]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    if positive.size:
        lo, hi = positive.min(), positive.max()
        if lo == hi:  # one distinct value: widen so geomspace has a range
            lo, hi = lo / 2, hi * 2
        edges = np.geomspace(lo, hi, bins + 1)
    for name, e in flat.items():
        zeros = int(np.count_nonzero(e == 0))
        label = f"{name} ({zeros} of {e.size} exactly zero)"
        if positive.size:
            counts, _ = np.histogram(e[e > 0], bins=edges)
            # A step line (not bars) per method keeps overlapping series readable.
            ax.step(edges, np.append(counts, counts[-1]), where="post", label=label)
        else:
            ax.plot([], [], label=label)  # all errors are zero: still list the method
    if positive.size:  # a log axis with no positive data cannot be drawn
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "every error is exactly zero", transform=ax.transAxes, ha="center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(_wrap(title, 64))
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int) -> str:
    """``text`` broken between words into lines of at most ``width`` characters."""
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text


def _x_value(row: dict, x: str) -> float | None:
    if x == "bytes":
        return row.get("nbytes")
    if x == "flops":
        return row.get("flops")
    if x == "elements":
        return float(np.prod(row["shape"]))
    raise ValueError(f"x={x!r}: expected 'bytes', 'elements' or 'flops'")


def _provenance(results: dict, recorded: bool) -> str:
    device = results["device"].get("gpu") or "CUDA simulator"
    date = str(results["date"])[:10]
    # A recorded run shown elsewhere must not pass for a measurement on this machine.
    return f"recorded on {device}, {date}" if recorded else f"{device}, {date}"


def _spans_decades(values) -> bool:
    """Whether positive ``values`` span more than two decades: then only a log axis shows the
    small ones (1 TFLOPS beside 1300 is a bar of no width on a linear axis)."""
    positive = [v for v in values if v and v > 0]
    return len(positive) > 1 and max(positive) / min(positive) > 100


def _log_axis(axis) -> None:
    """Ticks of a log axis labelled 0.1, 1, 10, 100 ..., not as powers of ten."""
    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _skipped_notes(rows: list[dict]) -> list[str]:
    """One line per label and reason of the rows that were not run, however many sizes."""
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        if "skipped" in row:
            key = (row["label"], row["skipped"])
            counts[key] = counts.get(key, 0) + 1
    return [f"{label}: skipped{f' at {n} sizes' if n > 1 else ''} ({reason})" for (label, reason), n in counts.items()]


def throughput_plot(results: dict, *, x: str = "bytes", y: str = "tbps",
                    recorded: bool = False) -> Figure:
    """Throughput against size, one line per row label; peers dashed; the copy roofline as a
    horizontal line (for ``y="tbps"``). ``results`` is a dict from [`load_results`][tutorial.perf.timing.load_results].
    Pass ``recorded=True`` when showing a stored run on a machine other than the one that made it.
    Rows that were not run are listed once each, under the plot. The y axis turns logarithmic
    when the values span more than two decades.
    """
    if y not in _Y_LABELS:
        raise ValueError(f"y={y!r}: expected one of {sorted(_Y_LABELS)}")
    series = defaultdict(list)
    peers = {}
    for row in results["rows"]:
        if "skipped" in row:
            continue
        xv, yv = _x_value(row, x), row.get(y)
        if xv is None or yv is None:
            continue  # e.g. a FLOP row on a bandwidth plot
        series[row["label"]].append((xv, yv))
        peers[row["label"]] = bool(row.get("peer"))
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    for label, points in series.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, "--" if peers[label] else "-", marker="o", label=label)
    if y == "tbps" and results.get("copy_tbps"):
        ax.axhline(results["copy_tbps"], color="0.3", linestyle=":",
                   label=f"copy roofline ({results['copy_tbps']:.2f} TB/s)")
    ax.set_xscale("log")
    if _spans_decades([v for points in series.values() for _, v in points]):
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
    ax.set_xlabel(_X_LABELS.get(x, x))
    ax.set_ylabel(_Y_LABELS[y])
    ax.set_title(_wrap(f"{results.get('name', 'benchmark')}: {_provenance(results, recorded)}", 64))
    ax.legend(fontsize="small")
    notes = _skipped_notes(results["rows"])
    if notes:  # under the x label, clear of the data
        ax.annotate("\n".join(notes), xy=(0.5, 0), xycoords=ax.xaxis.label, xytext=(0, -4),
                    textcoords="offset points", ha="center", va="top", fontsize="small", color="0.3")
    fig.tight_layout()
    return fig


def _bar_value(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def throughput_bars(results: dict, *, y: str = "tbps", recorded: bool = False) -> Figure:
    """One horizontal bar per row of a run at a single size: ours solid, peers hatched, the
    value written at the end of each bar, the copy roofline as a dotted line (for ``y="tbps"``).
    The figure for sweeps that time several kernels on one shape, where a line per label over
    sizes would be a single point each. Long labels are wrapped; the axis is logarithmic when
    the values span more than two decades, so that every bar can be seen."""
    if y not in _Y_LABELS:
        raise ValueError(f"y={y!r}: expected one of {sorted(_Y_LABELS)}")
    rows = [r for r in results["rows"] if "skipped" not in r and r.get(y) is not None]
    labels = [_wrap(r["label"], 40) for r in rows]
    slots = [0.2 + 0.16 * (label.count("\n") + 1) for label in labels]  # inches per row
    tops = np.cumsum([0.0, *slots])
    positions = -(tops[:-1] + np.array(slots) / 2)  # the first row on top
    fig = Figure(figsize=(7.2, float(tops[-1]) + 1.4))
    ax = fig.subplots()
    values = [r[y] for r in rows]
    log = _spans_decades(values)
    for pos, row in zip(positions, rows):
        peer = bool(row.get("peer"))
        ax.barh(pos, row[y], height=0.24, color="0.75" if peer else "C0", hatch="//" if peer else None,
                edgecolor="0.4")
        ax.annotate(_bar_value(row[y]), xy=(row[y], pos), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=9,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})  # readable over the roofline
    ax.set_yticks(positions, labels, fontsize=9)
    ax.set_ylim(-float(tops[-1]), 0)
    roofline = results.get("copy_tbps") if y == "tbps" else None
    if roofline:  # named in the x label: a legend would cover a bar
        ax.axvline(roofline, color="0.3", linestyle=":")
    shapes = {" x ".join(map(str, r["shape"])) for r in rows}
    xlabel = _Y_LABELS[y] + (", log scale" if log else "")
    xlabel += f"; shape {shapes.pop()}" if len(shapes) == 1 else ""
    xlabel += f"\ndotted: copy roofline ({roofline:.2f} TB/s)" if roofline else ""
    ax.set_xlabel(xlabel)
    top = max(values + [roofline or 0]) if rows else 1.0
    if log:
        ax.set_xscale("log")
        lo = 10.0 ** np.floor(np.log10(min(v for v in values if v > 0)))
        ax.set_xlim(lo, top * 4)  # room for the value written after the longest bar
        _log_axis(ax.xaxis)
    else:
        ax.set_xlim(0, top * 1.15)
    ax.set_title(_wrap(f"{results.get('name', 'benchmark')}: {_provenance(results, recorded)}", 56),
                 fontsize="medium")
    fig.tight_layout()
    return fig


def wgmma_figure(results: dict, *, recorded: bool = False) -> Figure:
    """Chapter 06's run: TFLOPS per shape (grouped bars) of our TMA kernel, promoted with
    1 x 128 / 128 x 128 scales and not promoted with per-tensor ones, beside `torch._scaled_mm`
    with the same scales; a peer that refused a shape has no bar, and says so below."""
    series = [("TMA + warp-specialized wgmma 1x128/128x128, promoted (ours)", "C0", None),
              ("torch._scaled_mm FP8 1x128/128x128", "0.7", "//"),
              ("TMA + warp-specialized wgmma per-tensor, not promoted (ours)", "C1", None),
              ("torch._scaled_mm FP8 per-tensor", "0.45", "//")]
    speed = [r for r in results["rows"] if r.get("flops")]
    shapes = list(dict.fromkeys(tuple(r["shape"]) for r in speed))
    fig = Figure(figsize=(8.5, 4.6))
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (label, color, hatch) in enumerate(series):
        for j, shape in enumerate(shapes):
            row = next((r for r in speed if r["label"] == label and tuple(r["shape"]) == shape), None)
            if row and row.get("tflops"):
                ax.bar(j + (i - 1.5) * width, row["tflops"], width, color=color, hatch=hatch, edgecolor="0.3",
                       label=label if j == 0 or not ax.get_legend_handles_labels()[1].count(label) else None)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), [_wrap(t, 60) for t in unique], fontsize=8, loc="upper left")
    ax.set_xticks(range(len(shapes)), [" x ".join(map(str, s)) for s in shapes], fontsize=8, rotation=15)
    ax.set_ylabel(_Y_LABELS["tflops"])
    ax.set_xlabel("M x N x K")
    ax.set_ylim(0, max((r["tflops"] for r in speed if r.get("tflops")), default=1) * 1.6)  # room for the legend
    notes = _skipped_notes(results["rows"])
    if notes:
        ax.annotate("\n".join(notes), xy=(0.5, 0), xycoords=ax.xaxis.label, xytext=(0, -4),
                    textcoords="offset points", ha="center", va="top", fontsize="small", color="0.3")
    ax.set_title(_wrap(f"{results.get('name', 'benchmark')}: {_provenance(results, recorded)}", 70),
                 fontsize="medium")
    fig.tight_layout()
    return fig


def results_figure(results: dict, *, recorded: bool = False) -> Figure:
    """The figure of a run of ``fp8-tutorial bench``, as the sweep draws it: a bar per row when
    every row has the same shape, a line per label over sizes otherwise; TFLOPS when the rows
    count FLOPs, TB/s otherwise. Chapter 06's run has its own ([`wgmma_figure`][])."""
    if results.get("name") == "ch06_wgmma":
        return wgmma_figure(results, recorded=recorded)
    rows = results["rows"]
    y = "tflops" if any(r.get("tflops") for r in rows) else "tbps"
    if len({tuple(r["shape"]) for r in rows}) == 1:
        return throughput_bars(results, y=y, recorded=recorded)
    return throughput_plot(results, x="flops" if y == "tflops" else "bytes", y=y, recorded=recorded)


def redraw(path: Path | str) -> Path:
    """Draw the PNG beside a recorded results file (``results/<gpu>/<name>.json``) again, from
    the file alone: no GPU, nothing timed. Returns the PNG's path."""
    from .timing import load_results

    path = Path(path)
    return save(results_figure(load_results(path)), path.with_suffix(".png"))


def save(fig: Figure, path: Path | str) -> Path:
    """Write ``fig`` as a 120 dpi PNG cropped to what is drawn (a title or a label that reaches
    past the figure's edge is kept whole), creating the directory first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png", bbox_inches="tight", pad_inches=0.1)
    return path


_NUMBER = re.compile(r"[-+\u2212]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?\s*(%|x|dB)?", re.IGNORECASE)


class Table:
    """Rows shown as a table: an HTML table in a notebook or on the course website, where a
    narrow page wraps a cell between words, never inside a number; aligned plain text when
    printed.

    ``rows`` are dicts with the same keys, which are the column headers, in order. Values are
    shown as ``str`` gives them, so format numbers first (``f"{v:.2e}"``). A column whose
    cells read as numbers ("3.68e-07", "21.5%", "5.75x", "1,368") is aligned to the right.
    """

    def __init__(self, rows: list[dict]):
        if not rows:
            raise ValueError("Table: no rows")
        self.columns = list(rows[0])
        self.cells = [[str(row[c]) for c in self.columns] for row in rows]
        self.right = [self._numeric([r[i] for r in self.cells]) for i in range(len(self.columns))]

    @staticmethod
    def _numeric(column: list[str]) -> bool:
        filled = [c for c in column if c.strip()]
        numbers = sum(bool(_NUMBER.fullmatch(c.strip())) for c in filled)
        return bool(filled) and numbers >= len(filled) / 2

    def _repr_html_(self) -> str:
        # Compact cells, and a table as wide as the page allows (headers wrap between words);
        # wider than that, it scrolls sideways. Inline styles, so any page's table style yields.
        def cell(tag, text, right):  # numbers never wrap, text may
            style = "padding: 0.25em 0.7em; min-width: 0; " + ("text-align: right" if right else "text-align: left")
            style += "; white-space: nowrap" if right and tag == "td" else ""
            return f'<{tag} style="{style}">{html.escape(text)}</{tag}>'

        head = "".join(cell("th", c, r) for c, r in zip(self.columns, self.right))
        body = "".join("<tr>" + "".join(cell("td", c, r) for c, r in zip(row, self.right)) + "</tr>"
                       for row in self.cells)
        return (f'<div style="overflow-x: auto"><table style="width: auto; margin: 0">'
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")

    def __str__(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.cells)) for i, c in enumerate(self.columns)]

        def line(values):
            return "  ".join(v.rjust(w) if right else v.ljust(w)
                             for v, w, right in zip(values, widths, self.right)).rstrip()

        return "\n".join([line(self.columns), "  ".join("-" * w for w in widths), *map(line, self.cells)])

    __repr__ = __str__


def metrics_table(rows: list[dict]) -> Table:
    """Rows of `tutorial.accuracy.accuracy_table` as a `Table`: their labels ("method", and any
    added to the rows), then MAE, max abs error, relative Frobenius error and SQNR in dB, with
    the digits `tutorial.accuracy.format_table` prints."""
    metrics = {"MAE": ("mae", ".3e"), "max abs": ("max_abs", ".3e"), "rel Frobenius": ("rel_fro", ".3e"),
               "SQNR dB": ("sqnr_db", ".2f")}
    keys = {key for key, _ in metrics.values()}
    return Table([{**{k: v for k, v in row.items() if k not in keys},
                   **{name: format(row[key], spec) for name, (key, spec) in metrics.items()}} for row in rows])

