"""Charts drawn as SVG on the server: the fleet's online count with incident windows over
it, and a device's epoch as a bar of online, bridged, credited and uncounted time.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies), and colour is never the only channel: incident windows carry their names and
a dashed outline when only proposed, and every piece has a <title>. All text is escaped.
Each drawn thing carries data-* attributes with its exact values, for the browser tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

COLOURS = {
    "online": "#009E73",
    "bridged": "#56B4E9",
    "credited": "#E69F00",
    "uncounted": "#D55E00",
    "eligible": "#009E73",
    "helped": "#56B4E9",
    "ineligible": "#D55E00",
    "silent": "#BBBBBB",
    "confirmed": "#CC79A7",
    "proposed": "#F0E442",
}
SYMBOLS = {"eligible": "✓", "helped": "+", "ineligible": "✗", "silent": "·"}
LABELS = {
    "online": "online",
    "bridged": "bridged gap (restart grace)",
    "credited": "credited gap (incident)",
    "uncounted": "uncounted gap",
    "eligible": "eligible",
    "helped": "eligible thanks to bridges or incident credit",
    "ineligible": "not eligible",
    "silent": "no heartbeats",
    "confirmed": "confirmed incident",
    "proposed": "proposed incident (dashed outline)",
}


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hhmm(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%m-%d %H:%M")


def legend(kinds: Sequence[str]) -> Markup:
    """An HTML legend: swatch, symbol where there is one, and words."""
    items = "".join(
        f'<li><span class="swatch" data-kind="{k}" aria-hidden="true">'
        f'<svg width="14" height="14"><rect width="14" height="14" fill="{COLOURS[k]}"/>'
        f"</svg>{escape(SYMBOLS.get(k, ''))}</span> {escape(LABELS[k])}</li>"
        for k in kinds
    )
    return Markup(f'<ul class="legend">{items}</ul>')  # noqa: S704 (escaped above)


def fleet_chart(
    counts: Sequence[tuple[int, int]],
    incidents: Sequence[tuple[str, str, int, int]],
    *,
    width: int = 960,
    height: int = 300,
) -> Markup:
    """The online count over time (`counts`: (µs, online)) with incident windows
    (`incidents`: (id, status, start µs, end µs)) drawn over it."""
    if not counts:
        return Markup('<p class="empty">No heartbeats stored yet.</p>')
    left, right, top, bottom = 64, 12, 12, 36
    t0, t1 = counts[0][0], counts[-1][0]
    span = max(1, t1 - t0)
    peak = max([1, *(n for _, n in counts)])
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(us: int) -> float:
        return left + plot_w * (min(max(us, t0), t1) - t0) / span

    def y(n: int) -> float:
        return top + plot_h * (1 - n / peak)

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="fleet-title fleet-desc" data-chart="fleet" '
        f'data-from="{_iso(t0)}" data-to="{_iso(t1)}">',
        '<title id="fleet-title">GPUs online over time</title>',
        f'<desc id="fleet-desc">From {peak:,} at most; incident windows shaded.</desc>',
    ]
    for incident_id, status, start, end in incidents:
        if end <= t0 or start >= t1:
            continue
        a, b = x(start), x(end)
        dash = ' stroke-dasharray="6 4"' if status == "proposed" else ""
        parts.append(
            f'<g class="incident" data-incident="{escape(incident_id)}" data-status="{status}" '
            f'data-start="{_iso(start)}" data-end="{_iso(end)}" data-x="{a:.1f}" '
            f'data-width="{b - a:.1f}"><title>{escape(incident_id)} ({status}): '
            f"{_hhmm(start)} to {_hhmm(end)}</title>"
            f'<rect x="{a:.1f}" y="{top}" width="{max(b - a, 2):.1f}" height="{plot_h}" '
            f'fill="{COLOURS[status]}" fill-opacity="0.35" stroke="#333"{dash}/>'
            f'<text x="{a + 3:.1f}" y="{top + 14}" font-size="12">{escape(incident_id)}</text></g>'
        )
    points = " ".join(f"{x(t):.1f},{y(n):.1f}" for t, n in counts)
    parts.append(
        f'<polyline points="{points}" fill="none" stroke="{COLOURS["online"]}" stroke-width="1.5"/>'
    )
    for fraction in (0, 0.5, 1):
        value = int(peak * fraction)
        parts.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" font-size="12" text-anchor="end">'
            f"{value:,}</text>"
            f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#ccc"/>'
        )
    ticks = 6
    for i in range(ticks + 1):
        at = t0 + span * i // ticks
        anchor = "end" if i == ticks else "middle"  # the last label stays inside the chart
        parts.append(
            f'<text x="{x(at):.1f}" y="{height - 12}" font-size="12" text-anchor="{anchor}">'
            f"{_hhmm(at)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every value above is escaped or a number)


def epoch_bar(
    segments: Sequence[tuple[str, int, int]], start: int, end: int, *, width: int = 720
) -> Markup:
    """One epoch [start, end) as a bar: `segments` are (kind, s µs, e µs)."""
    height, span = 28, max(1, end - start)
    parts = [
        f'<svg class="bar" viewBox="0 0 {width} {height + 16}" role="img" '
        f'aria-label="Time in the epoch from {_hhmm(start)}" data-epoch-start="{_iso(start)}">',
        f'<rect width="{width}" height="{height}" fill="#f4f4f4" stroke="#999"/>',
    ]
    for kind, s, e in segments:
        a = width * (s - start) / span
        w = max(width * (e - s) / span, 0.5)
        parts.append(
            f'<rect class="piece" data-kind="{kind}" data-start="{_iso(s)}" data-end="{_iso(e)}"'
            f' data-us="{s} {e}"'
            f' x="{a:.2f}" width="{w:.2f}" height="{height}" fill="{COLOURS[kind]}">'
            f"<title>{escape(LABELS[kind])}: {_hhmm(s)} to {_hhmm(e)}</title></rect>"
        )
    for hour in range(0, 25, 6):
        tick = width * hour / 24
        anchor = "start" if hour == 0 else "end" if hour == 24 else "middle"
        parts.append(
            f'<text x="{tick:.1f}" y="{height + 13}" font-size="11" text-anchor="{anchor}">'
            f"{hour:02d}:00</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (escaped above)
