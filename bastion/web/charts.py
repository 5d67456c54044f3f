"""Small charts drawn on the server as inline SVG: no chart library, nothing to load, readable
without scripts. `line(points)` for a series over time (open risks, coverage)."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 560, 160, 32


def line(points: Sequence[tuple[datetime, float]], *, label: str, unit: str = "",
         ymax: float | None = None) -> Markup:
    """A line chart of (time, value) points, oldest first, with its first and last values
    labelled; an empty series says so."""
    if not points:
        return Markup(f'<p class="muted">No data for {escape(label)} yet.</p>')
    xs = [p[0].timestamp() for p in points]
    ys = [float(p[1]) for p in points]
    x0, x1 = min(xs), max(xs)
    top = ymax if ymax is not None else max(max(ys), 1.0)
    span = (x1 - x0) or 1.0

    def sx(x: float) -> float:
        return PAD + (x - x0) / span * (WIDTH - 2 * PAD)

    def sy(y: float) -> float:
        return HEIGHT - PAD + 8 - (y / top) * (HEIGHT - PAD - 16)

    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(zip(xs, ys)))
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" class="fill-low">'
                   f'<title>{datetime.fromtimestamp(x).date()}: {y:g}{unit}</title></circle>'
                   for x, y in zip(xs, ys)) if len(xs) <= 60 else ""
    first, last = points[0], points[-1]
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}: '
        f'{ys[0]:g}{unit} on {first[0].date()}, {ys[-1]:g}{unit} on {last[0].date()}">'
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD + 8}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD + 8}"/>'
        f'<text x="{PAD}" y="{HEIGHT - 6}">{first[0].date()}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" text-anchor="end">{last[0].date()}</text>'
        f'<text x="4" y="14">{top:g}{unit}</text>'
        f'<path d="{path}" class="stroke-line"/>{dots}</svg>')
