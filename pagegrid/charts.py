"""Server-side SVG bar charts: no JavaScript, nothing to vendor, exact numbers in the tooltips."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence

from markupsafe import Markup
from markupsafe import escape


def bar_chart(points: Sequence[tuple[str, int]], *, describe: Callable[[int], str], title: str,
              axis: Callable[[int], str] | None = None, width: int = 720, height: int = 200,
              every: int = 5) -> Markup:
    """Bars for ``(label, value)`` points; ``describe`` renders a value for tooltips, ``axis``
    (default: ``describe``) the peak on the axis, where there is less room."""
    axis = axis or describe
    top, bottom, left = 16, 28, 84
    plot_w, plot_h = width - left - 8, height - top - bottom
    peak = max((v for _, v in points), default=0) or 1
    slot = plot_w / max(len(points), 1)
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{escape(axis(peak))}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>']
    for i, (label, value) in enumerate(points):
        bar_h = plot_h * value / peak
        x = left + i * slot + slot * 0.15
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{bar_h:.1f}"><title>{escape(label)}: {escape(describe(value))}</title></rect>')
        if i % every == 0 or i == len(points) - 1:
            parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{height - 8}" text-anchor="middle">'
                         f'{escape(label[5:] if len(label) == 10 else label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
