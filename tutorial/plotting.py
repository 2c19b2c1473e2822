"""Figures for the course: quantization error histograms and throughput against the copy roofline.

Figures are built with :class:`matplotlib.figure.Figure` directly, not pyplot: no GUI backend is
ever touched (safe headless, Agg), nothing is shown, and notebooks display the returned Figure
once. Every function returns the Figure; :func:`save` writes it as PNG.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

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
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


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


def throughput_plot(results: dict, *, x: str = "bytes", y: str = "tbps",
                    recorded: bool = False) -> Figure:
    """Throughput against size, one line per row label; peers dashed; the copy roofline as a
    horizontal line (for ``y="tbps"``). ``results`` is a dict from :func:`tutorial.bench.load_results`.
    Pass ``recorded=True`` when showing a stored run on a machine other than the one that made it.
    """
    if y not in _Y_LABELS:
        raise ValueError(f"y={y!r}: expected one of {sorted(_Y_LABELS)}")
    series = defaultdict(list)
    peers, skipped = {}, []
    for row in results["rows"]:
        if "skipped" in row:
            skipped.append(f"{row['label']}: skipped ({row['skipped']})")
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
    ax.set_xlabel(_X_LABELS.get(x, x))
    ax.set_ylabel(_Y_LABELS[y])
    ax.set_title(f"{results.get('name', 'benchmark')}: {_provenance(results, recorded)}")
    if skipped:
        ax.text(0.01, 0.01, "\n".join(skipped), transform=ax.transAxes, fontsize="small",
                va="bottom", bbox={"facecolor": "white", "alpha": 0.8})
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def throughput_bars(results: dict, *, y: str = "tbps", recorded: bool = False) -> Figure:
    """One horizontal bar per row of a run at a single size: ours solid, peers hatched, the
    value written at the end of each bar, the copy roofline as a dotted line (for ``y="tbps"``).
    The figure for sweeps that time several kernels on one shape, where a line per label over
    sizes would be a single point each."""
    if y not in _Y_LABELS:
        raise ValueError(f"y={y!r}: expected one of {sorted(_Y_LABELS)}")
    rows = [r for r in results["rows"] if "skipped" not in r and r.get(y) is not None]
    fig = Figure(figsize=(8, 0.45 * len(rows) + 1.6))
    ax = fig.subplots()
    positions = np.arange(len(rows))[::-1]  # the first row on top
    for pos, row in zip(positions, rows):
        peer = bool(row.get("peer"))
        ax.barh(pos, row[y], color="0.75" if peer else "C0", hatch="//" if peer else None, edgecolor="0.4")
        ax.text(row[y], pos, f" {row[y]:.2f}", va="center", fontsize="small")
    ax.set_yticks(positions, [r["label"] for r in rows], fontsize="small")
    if y == "tbps" and results.get("copy_tbps"):
        ax.axvline(results["copy_tbps"], color="0.3", linestyle=":",
                   label=f"copy roofline ({results['copy_tbps']:.2f} TB/s)")
        ax.legend(fontsize="small", loc="lower right")
    shapes = {" x ".join(map(str, r["shape"])) for r in rows}
    ax.set_xlabel(_Y_LABELS[y] + (f", shape {shapes.pop()}" if len(shapes) == 1 else ""))
    ax.set_xlim(0, max([r[y] for r in rows] + [results.get("copy_tbps") or 0]) * 1.15 if rows else 1)
    ax.set_title(f"{results.get('name', 'benchmark')}: {_provenance(results, recorded)}", fontsize="medium")
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path | str) -> Path:
    """Write ``fig`` as a 120 dpi PNG, creating the directory first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path
