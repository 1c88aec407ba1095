"""Accuracy against speed, one labelled point per row (the experiment
runner's ``results.png``, ``tools/compress.py``'s ``compress.png``)."""
import os.path as osp
from typing import Optional, Sequence, Tuple

from cait_mm.utils.atomic_write import atomic_output

# label, x (speed), y (accuracy), y's spread (None: no error bar)
Point = Tuple[str, float, float, Optional[float]]


def accuracy_speed_plot(points: Sequence[Point], xlabel: str, ylabel: str,
                        title: str, filename: str) -> None:
    """Write a scatter of ``points`` to ``filename`` (its suffix names the
    format), atomically."""
    import matplotlib
    matplotlib.use('Agg')  # files only: no display on servers
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, x, y, spread in points:
        ax.errorbar(x, y, yerr=spread or None, fmt='o', capsize=3)
        ax.annotate(label, (x, y), textcoords='offset points',
                    xytext=(5, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(filename) as tmp_path:
        fig.savefig(tmp_path, dpi=120,
                    format=osp.splitext(filename)[1][1:] or 'png')
    plt.close(fig)
