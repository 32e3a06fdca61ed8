"""The prediction figure of one recording (``<stem>_prediction.png``, see :mod:`finetune.predict_outputs`).

:func:`plot_prediction`: the probability trace over the whole recording (a hypnogram for sleep staging)
with the detected events shaded and the rejected windows hatched and labelled with their reason
(:func:`rejected_spans`), and the EEG as the model sees it around the most confident event, zero-filled
montage pairs marked.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from finetune.postprocess import DetectedEvent
from finetune.predictor import WindowPredictions
from runtime.files import atomic_write

__all__ = ["plot_prediction", "rejected_spans"]

# Sleep stages top to bottom in a hypnogram (clinical convention).
_HYPNOGRAM_ORDER = ("W", "REM", "N1", "N2", "N3")


def _time_unit(duration_s: float) -> tuple[float, str]:
    if duration_s > 3 * 3600:
        return 3600.0, "h"
    if duration_s > 600:
        return 60.0, "min"
    return 1.0, "s"


#: Shading of rejected windows in the figure, per reason (others grey).
_REJECTED_COLORS = {"nan": "0.55", "inf": "C4", "flat": "0.75", "amplitude": "C5", "model_output": "C3"}


def rejected_spans(predictions: WindowPredictions) -> list[tuple[float, float, str]]:
    """Stretches of rejected windows, one per run of consecutive windows rejected for one reason.

    Parameters
    ----------
    predictions : WindowPredictions

    Returns
    -------
    spans : list of (float, float, str)
        ``(start_s, end_s, reason)``: from the first window's start to the last window's end, in s of the
        recording; windows of one reason whose time spans touch or overlap are one stretch.
    """
    spans: list[list] = []
    for start, reason in zip(predictions.starts_s.tolist(), predictions.reasons.tolist(), strict=True):
        if not reason:
            continue
        end = start + predictions.window_s
        if spans and spans[-1][2] == reason and start <= spans[-1][1] + 1e-9:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end, reason])
    return [(float(a), float(b), str(r)) for a, b, r in spans]


def _trace_style(n_windows: int) -> dict:
    """Line style of a probability trace: steps, and a marker when one window would draw no line."""
    return dict(linewidth=0.8, drawstyle="steps-mid", marker="o" if n_windows == 1 else None, markersize=4)


def plot_prediction(
    path: str | os.PathLike,
    predictions: WindowPredictions,
    task,
    *,
    duration_s: float,
    events: list[DetectedEvent],
    threshold: float,
    hyp: dict | None,
    excerpt: tuple[np.ndarray, float] | None,
    ch_names,
    sfreq: float,
    title: str,
    highlight: tuple[float, float] | None = None,
    excerpt_title: str = "",
    filled_channels=(),
    dpi: float = 110,
    width_in: float = 13.0,
) -> Path:
    """The prediction figure (PNG, matplotlib Agg).

    Top: the probability trace over the whole recording (the positive class for binary tasks, every class
    for multi-class tasks; a hypnogram for sleep staging), detected events shaded, rejected windows shaded
    and hatched, labelled with their reason (:func:`rejected_spans`). Bottom: ``excerpt``, the preprocessed
    EEG in uV around the most confident event, with ``highlight`` (the event) shaded; channels filled with
    zeros (``filled_channels``) are labelled "(filled)" in grey. The title names the filled channels.

    Parameters
    ----------
    path : path-like
    predictions : WindowPredictions
    task : Task
    duration_s : float
        Recording length in s.
    events : list of DetectedEvent
    threshold : float
        Drawn for binary tasks.
    hyp : dict | None
        From :func:`finetune.postprocess.hypnogram` (sleep staging).
    excerpt : (ndarray (n_chans, n_samples), float start_s) | None
    ch_names : list of str
    sfreq : float
        Sampling rate of the excerpt in Hz.
    title : str
    highlight : (float, float) | None
        Start and end in s to shade in the excerpt.
    excerpt_title : str
        What the excerpt shows (e.g. the most confident event).
    filled_channels : sequence of str
        Montage pairs filled with zeros (``preprocess.missing_channels=zeros``), from ``ch_names``.
    dpi, width_in : float
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit, unit_name = _time_unit(duration_s)
    n_rows = 2 if excerpt is not None else 1
    heights = [1.0, 1.6][:n_rows]
    fig, axes = plt.subplots(
        n_rows,
        1,
        figsize=(width_in, 2.6 + 3.6 * (n_rows - 1)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    ax = axes[0, 0]
    centres = (predictions.starts_s + predictions.window_s / 2) / unit
    p = predictions.probabilities
    if hyp is not None:
        order = [c for c in _HYPNOGRAM_ORDER if c in task.classes]
        order = order if len(order) == task.n_classes else list(task.classes)
        level = {c: i for i, c in enumerate(order)}
        y = np.array([level.get(s, np.nan) for s in hyp["stage"]], dtype=float)
        x = np.append(hyp["onset_s"], hyp["onset_s"][-1] + hyp["duration_s"][-1]) / unit if len(y) else []
        if len(y):
            ax.stairs(y, x, baseline=None, color="k", linewidth=1.0)
        ax.set_yticks(range(len(order)), order)
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set_ylabel("stage")
    elif task.is_binary:
        ax.plot(
            centres,
            p[:, task.positive_index],
            color="C0",
            label=f"P({task.positive_class})",
            **_trace_style(len(centres)),
        )
        ax.axhline(threshold, color="C3", linestyle="--", linewidth=0.8, label=f"threshold {threshold:g}")
        ax.set_ylim(-0.08, 1.02)
        ax.set_ylabel("probability")
    else:
        for c, name in enumerate(task.classes):
            ax.plot(centres, p[:, c], label=name, **_trace_style(len(centres)))
        ax.set_ylim(-0.08, 1.02)
        ax.set_ylabel("probability")
    for e in events if hyp is None else []:
        color = "C1" if task.is_binary else f"C{task.classes.index(e.trial_type)}"  # the class's trace colour
        ax.axvspan(e.onset_s / unit, e.offset_s / unit, color=color, alpha=0.3, linewidth=0)
    spans = rejected_spans(predictions)
    for k, (start_s, end_s, reason) in enumerate(spans):
        first = all(r != reason for _, _, r in spans[:k])  # one legend entry per reason
        ax.axvspan(
            start_s / unit,
            end_s / unit,
            facecolor=_REJECTED_COLORS.get(reason, "0.5"),
            alpha=0.35,
            hatch="//",
            edgecolor="0.3",
            linewidth=0,
            label=f"rejected: {reason}" if first else "_rejected",
        )
    ax.set_xlim(0, duration_s / unit)
    ax.set_xlabel(f"time ({unit_name})")
    if hyp is None or spans:
        ax.legend(loc="upper right", fontsize=7, ncol=min(4, task.n_classes + 2), framealpha=0.8)
    filled = [c for c in ch_names if c in set(filled_channels)] or list(filled_channels)
    if filled:
        title += f"\n{len(filled)} channel(s) filled with zeros (missing in the recording): "
        title += ", ".join(filled)
    ax.set_title(title, fontsize=9)

    if excerpt is not None:
        data, start_s = excerpt
        ax = axes[1, 0]
        t = start_s + np.arange(data.shape[1]) / sfreq
        spread = np.percentile(np.abs(data), 99, axis=1)
        spacing = float(np.median(spread[spread > 0])) * 2.0 if (spread > 0).any() else 1.0
        offsets = -spacing * np.arange(len(data))
        ax.plot(t, (data + offsets[:, None]).T, color="k", linewidth=0.4)
        if highlight is not None:
            ax.axvspan(max(highlight[0], t[0]), min(highlight[1], t[-1]), color="C1", alpha=0.25, linewidth=0)
        labels = [f"{c} (filled)" if c in filled else c for c in ch_names]
        ax.set_yticks(offsets, labels, fontsize=7)
        for label, name in zip(ax.get_yticklabels(), ch_names, strict=True):
            if name in filled:
                label.set_color("0.5")
        ax.set_xlim(t[0], t[-1])
        ax.set_xlabel("time (s)")
        ax.set_title(
            f"{excerpt_title}: EEG as the model sees it (montage, filters; channels {spacing:.0f} uV apart)",
            fontsize=9,
        )
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)
