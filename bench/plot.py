"""The report's figure: item 1's throughputs, and every target's margin."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")  # no display; set before pyplot is imported

import matplotlib.pyplot as plt
from _timing import Result
from matplotlib.axes import Axes

GOOD, BAD, NEUTRAL = "#2e7d32", "#c62828", "#78909c"
SUBJECT_COLOURS = {
    "strongroom": "#1565c0",
    "strongroom + manifest": "#64b5f6",
    "tink AES256_GCM_HKDF_1MB": "#ef6c00",
    "age X25519 (pyrage)": "#8e24aa",
    "raw AESGCM, in memory": "#9e9e9e",
    "file copy (no crypto)": "#cfd8dc",
}


def plot(figures: dict[str, float], results: list[Result], path: Path, title: str) -> None:
    """Write the PNG: grouped bars of MB/s (``"op|subject"`` figures), then target margins."""
    targeted = [r for r in results if r.target is not None]
    fig, (bars, margins) = plt.subplots(
        1,
        2,
        figsize=(15, max(5.0, 0.32 * len(targeted) + 1.5)),
        gridspec_kw={"width_ratios": [1.1, 1]},
    )
    _throughput(bars, figures)
    _margins(margins, targeted)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _throughput(ax: Axes, figures: dict[str, float]) -> None:
    groups = ["encrypt", "decrypt"]
    width = 0.8 / len(SUBJECT_COLOURS)
    drawn_labels: set[str] = set()
    for group_index, group in enumerate(groups):
        present = [
            (subject, value)
            for subject in SUBJECT_COLOURS
            if (value := figures.get(f"{group}|{subject}", figures.get(f"stage|{subject}")))
            is not None
        ]
        for index, (subject, value) in enumerate(present):
            x = group_index + (index - (len(present) - 1) / 2) * width
            drawn = ax.bar(
                [x],
                [value],
                width,
                color=SUBJECT_COLOURS[subject],
                label=None if subject in drawn_labels else subject,
            )
            drawn_labels.add(subject)
            ax.bar_label(drawn, fmt="%.0f", fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), [f"{g}, file to file" for g in groups])
    ax.set_ylabel("MB/s of plaintext (median)")
    ax.set_title("1. Chunked throughput (higher is better)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, frameon=False)
    ax.grid(axis="y", alpha=0.3)


def _margins(ax: Axes, results: list[Result]) -> None:
    labels = [f"{r.item}. {_short(r.measure)}" for r in results]
    margins = [r.target.margin(r.value) if r.target is not None else 1.0 for r in results]
    colours = [GOOD if r.met else BAD for r in results]
    ys = range(len(results))
    ax.barh(ys, margins, color=colours, height=0.6)
    for y, (margin, result) in enumerate(zip(margins, results, strict=True)):
        ax.text(
            margin * 1.08,
            y,
            f"{result.shown} (target {result.target_text})",
            va="center",
            fontsize=7,
        )
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    low = min([*margins, 0.5]) / 1.5
    high = max([*margins, 2.0]) * 8
    ax.set_xlim(low, high)
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("margin over the target (1 = exactly on it; right of the line = met)")
    ax.set_title("Targets: green met, red NOT met", fontsize=10)
    ax.grid(axis="x", alpha=0.3, which="both")


def _short(measure: str) -> str:
    return (
        measure.replace("tink AES256_GCM_HKDF_1MB", "tink")
        .replace("age X25519 (pyrage)", "age")
        .replace("peak memory above baseline", "peak memory")
    )
