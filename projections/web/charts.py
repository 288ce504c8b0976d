"""Charts drawn on the server as inline SVG: no script, no inline style, no third-party code.

Rules this module keeps:

* **Accessible.** Every chart is ``role="img"`` with a ``<title>`` and a ``<desc>`` it is
  labelled by; the page shows a legend and the same figures in a table beside it.
* **Styled by class only** (the page's policy forbids inline style): ``chart`` on the SVG,
  ``s0``..``s5`` for the series' colours, ``axis`` and ``grid-line`` for the frame (app.css).
* **Escaped.** Every label, title and description is XML-escaped here; the result is markup
  the templates insert as it is.
* An empty chart (no series, or no points) is drawn as a frame with the ``empty`` text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 12, 28
COLOURS = 6
BAR_ROW, BAR_LABEL = 26, 170


@dataclass(frozen=True)
class Series:
    """A named line: one value per label of the chart."""

    name: str
    values: Sequence[int | float]


def colour(index: int) -> str:
    """The class of the ``index``-th series' colour (they repeat after six)."""
    return f"s{index % COLOURS}"


def _open(ident: str, title: str, desc: str, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-labelledby="{escape(ident)}-title {escape(ident)}-desc">'
        f'<title id="{escape(ident)}-title">{escape(title)}</title>'
        f'<desc id="{escape(ident)}-desc">{escape(desc)}</desc>'
    )


def _svg(parts: Sequence[str]) -> Markup:
    """The drawn parts as markup: every text in them went through ``escape``, and every
    other value is a number or one of this module's own names."""
    return Markup("".join(parts))  # noqa: S704  # escaped part by part, see above


def _empty(ident: str, title: str, desc: str, empty: str) -> Markup:
    return _svg(
        [
            _open(ident, title, desc, HEIGHT)
            + f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{HEIGHT - TOP - BOTTOM}"/>'
            f'<text x="{WIDTH // 2}" y="{HEIGHT // 2}" text-anchor="middle">{escape(empty)}'
            "</text></svg>"
        ]
    )


def nice_top(value: float) -> float:
    """The top of a value axis of four whole-numbered steps at or above ``value``: each step
    1, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten, and at least 1."""
    raw = max(value, 1) / 4
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for step in (1, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * power >= raw and float(step * power).is_integer():
            return float(4 * step * power)
    return float(40 * power)  # not reached: 10 times the power is at or above raw


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _value_axis(top: float, plot_h: int) -> str:
    parts = []
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid-line" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(value)}</text>'
        )
    return "".join(parts)


def line_chart(
    ident: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    empty: str = "No data",
) -> Markup:
    """Lines over ``labels`` (the x axis: first, middle and last are written), one per series,
    coloured ``s0``, ``s1``... in order."""
    if not labels or not series:
        return _empty(ident, title, desc, empty)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_top(max((max(s.values, default=0) for s in series), default=0))
    step = plot_w / (len(labels) - 1) if len(labels) > 1 else 0.0

    def x(i: int) -> float:
        return LEFT + (i * step if len(labels) > 1 else plot_w / 2)

    parts = [_open(ident, title, desc, HEIGHT), _value_axis(top, plot_h)]
    for i in sorted({0, (len(labels) - 1) // 2, len(labels) - 1}):
        anchor = "start" if i == 0 else "end" if i == len(labels) - 1 else "middle"
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
            f"{escape(labels[i])}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" '
        f'y2="{TOP + plot_h}"/>'
    )
    for n, s in enumerate(series):
        points = " ".join(
            f"{x(i):.1f},{TOP + plot_h - plot_h * v / top:.1f}" for i, v in enumerate(s.values)
        )
        parts.append(
            f'<polyline class="line {colour(n)}" points="{points}">'
            f"<title>{escape(s.name)}</title></polyline>"
        )
    parts.append("</svg>")
    return _svg(parts)


def bar_chart(
    ident: str,
    title: str,
    desc: str,
    items: Sequence[tuple[str, int | float]],
    *,
    empty: str = "No data",
) -> Markup:
    """Horizontal bars, one per (label, value), in the order given, with the value written
    at the end of each bar; long labels are shortened (the table beside has them whole)."""
    if not items:
        return _empty(ident, title, desc, empty)
    height = 2 * TOP + BAR_ROW * len(items)
    plot_w = WIDTH - BAR_LABEL - RIGHT - 40
    top = nice_top(max(v for _, v in items))
    parts = [_open(ident, title, desc, height)]
    for n, (label, value) in enumerate(items):
        y = TOP + n * BAR_ROW
        width = plot_w * value / top
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(
            f'<text x="{BAR_LABEL - 8}" y="{y + 17}" text-anchor="end">{escape(short)}</text>'
            f'<rect class="bar {colour(0)}" x="{BAR_LABEL}" y="{y + 4}" width="{width:.1f}" '
            f'height="{BAR_ROW - 8}"/>'
            f'<text x="{BAR_LABEL + width + 6:.1f}" y="{y + 17}">{_number(value)}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{BAR_LABEL}" x2="{BAR_LABEL}" y1="{TOP}" '
        f'y2="{height - TOP}"/></svg>'
    )
    return _svg(parts)
