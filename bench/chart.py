"""docs/bench.svg: each level's throughput and p99 beside baseline (b), the p99 targets and the
run before, drawn as plain SVG (no plotting library)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from bench.results import Results

ROW, TOP, LABELS, PANEL, GAP = 22, 58, 300, 300, 60
# The p99 axis is logarithmic from P99_FLOOR ms, so that 5 ms and 500 ms both read.
P99_FLOOR = 1.0
# p99 targets by level (issue 19).
P99_TARGETS = {"get /jobs/{id} c=1": 8.0, "list ?userId=&status= c=1": 10.0}
BASELINE = "baseline (b) create c=64"
# Row labels shorten the lists over a million jobs, whose names are long.
LONG_PREFIX, SHORT_PREFIX = "list over 1M jobs, ", "list over 1M, "


@dataclass(frozen=True)
class Scales:
    """Where a value falls in each panel."""

    throughput_max: float
    p99_max: float

    def throughput_x(self, value: float) -> float:
        """Where a throughput falls in the left panel."""
        return LABELS + PANEL * min(value, self.throughput_max) / self.throughput_max

    def p99_x(self, value: float) -> float:
        """Where a p99 falls in the right panel (logarithmic)."""
        span = math.log10(self.p99_max / P99_FLOOR)
        return LABELS + PANEL + GAP + PANEL * math.log10(max(value, P99_FLOOR) / P99_FLOOR) / span


def levels(figures: dict[str, float]) -> list[str]:
    """The levels through the edge with a throughput, in the order they ran."""
    return [
        name.removesuffix(" req/s")
        for name in figures
        if name.endswith(" req/s") and not name.startswith("baseline") and math.isfinite(figures[name])
    ]


def scales(results: Results, previous: Results | None) -> Scales:
    """Axes wide enough for every value drawn, this run's and the previous run's."""
    runs = [results.figures, *([previous.figures] if previous else [])]
    rates = [f.get(f"{name} req/s", 0.0) for f in runs for name in [*levels(results.figures), BASELINE]]
    p99s = [f.get(f"{name} p99 ms", 0.0) for f in runs for name in [*levels(results.figures), BASELINE]]
    finite_rates = [value for value in rates if math.isfinite(value)] or [1.0]
    finite_p99s = [value for value in p99s if math.isfinite(value)] or [10.0]
    top = 10 ** math.ceil(math.log10(max(max(finite_p99s), 10.0)))
    return Scales(throughput_max=max(finite_rates) * 1.1 or 1.0, p99_max=top)


def _text(x: float, y: float, text: str, **attrs: str) -> str:
    extra = "".join(f" {name.replace('_', '-')}={quoteattr(value)}" for name, value in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(text)}</text>'


def _bar(x0: float, x1: float, y: float, level: str, value: float, colour: str) -> str:
    return (
        f'<rect x="{x0:.1f}" y="{y - 7:.1f}" width="{max(x1 - x0, 0.5):.1f}" height="14" fill="{colour}"'
        f" data-level={quoteattr(level)} data-value={quoteattr(f'{value:.3f}')}/>"
    )


def _tick(x: float, y: float, level: str, value: float, colour: str) -> str:
    return (
        f'<line x1="{x:.1f}" y1="{y - 9:.1f}" x2="{x:.1f}" y2="{y + 9:.1f}" stroke="{colour}" stroke-width="2"'
        f" data-level={quoteattr(level)} data-value={quoteattr(f'{value:.3f}')}/>"
    )


def _finite(*values: float) -> list[float]:
    return [value for value in values if math.isfinite(value)]


def bars(results: Results, scale: Scales, previous: Results | None = None) -> list[str]:
    """Each level's label, throughput bar and p99 bar, and its p99 target where it has one; each
    value written past its bar and past the marks on its row (the target, the run before)."""
    labels, rates, p99s, targets = ['<g id="labels">'], ['<g id="throughput">'], ['<g id="p99">'], ['<g id="targets">']
    before = previous.figures if previous else {}
    for row, name in enumerate(levels(results.figures)):
        y = TOP + ROW * row + ROW / 2
        rate, p99 = results.figures[f"{name} req/s"], results.figures.get(f"{name} p99 ms", math.nan)
        labels.append(_text(LABELS - 8, y + 4, name.replace(LONG_PREFIX, SHORT_PREFIX), text_anchor="end"))
        rates.append(_bar(LABELS, scale.throughput_x(rate), y, name, rate, "#4e79a7"))
        marks = _finite(rate, before.get(f"{name} req/s", math.nan))
        rates.append(_text(max(scale.throughput_x(value) for value in marks) + 5, y + 4, f"{rate:.0f}"))
        target = P99_TARGETS.get(name)
        if target is not None:
            targets.append(_tick(scale.p99_x(target), y, name, target, "#e15759"))
        if math.isfinite(p99):
            p99s.append(_bar(LABELS + PANEL + GAP, scale.p99_x(p99), y, name, p99, "#f28e2b"))
            marks = _finite(p99, target or math.nan, before.get(f"{name} p99 ms", math.nan))
            p99s.append(_text(max(scale.p99_x(value) for value in marks) + 5, y + 4, f"{p99:.1f}"))
    return [*labels, "</g>", *rates, "</g>", *p99s, "</g>", *targets, "</g>"]


def baseline_lines(results: Results, scale: Scales, bottom: float) -> list[str]:
    """Baseline (b)'s throughput and p99 as dashed lines across the rows."""
    rate = results.figures.get(f"{BASELINE} req/s", math.nan)
    p99 = results.figures.get(f"{BASELINE} p99 ms", math.nan)
    found = ['<g id="baseline-b" stroke="#59a14f" stroke-dasharray="5,3" stroke-width="1.5">']
    for x, value in ((scale.throughput_x(rate), rate), (scale.p99_x(p99), p99)):
        if math.isfinite(value):
            found.append(f'<line x1="{x:.1f}" y1="{TOP - 4}" x2="{x:.1f}" y2="{bottom:.1f}" data-value="{value:.3f}"/>')
            found.append(_text(x + 3, TOP - 8, f"(b) {value:.0f}", stroke="none", fill="#59a14f"))
    return [*found, "</g>"]


def previous_ticks(results: Results, previous: Results | None, scale: Scales) -> list[str]:
    """The run before's throughput and p99 of the same levels, as black ticks."""
    if previous is None:
        return []
    found = ['<g id="previous">']
    for row, name in enumerate(levels(results.figures)):
        y = TOP + ROW * row + ROW / 2
        rate = previous.figures.get(f"{name} req/s", math.nan)
        p99 = previous.figures.get(f"{name} p99 ms", math.nan)
        if math.isfinite(rate):
            found.append(_tick(scale.throughput_x(rate), y, name, rate, "#222"))
        if math.isfinite(p99):
            found.append(_tick(scale.p99_x(p99), y, name, p99, "#222"))
    return [*found, "</g>"]


def axes(scale: Scales, bottom: float) -> list[str]:
    """Panel titles, the p99 axis's decades and the legend."""
    p99_left = LABELS + PANEL + GAP
    found = [
        _text(LABELS, 20, "throughput, req/s", font_weight="bold"),
        _text(p99_left, 20, "p99 latency, ms (log scale)", font_weight="bold"),
    ]
    decade = P99_FLOOR
    while decade <= scale.p99_max:
        x = scale.p99_x(decade)
        found.append(f'<line x1="{x:.1f}" y1="{TOP - 4}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#ddd"/>')
        found.append(_text(x, bottom + 14, f"{decade:g}", text_anchor="middle", fill="#666"))
        decade *= 10
    legend = "dashed green: baseline (b); red tick: p99 target; black tick: the run before"
    found.append(_text(LABELS, 38, legend, fill="#444"))
    return found


def svg(results: Results, previous: Results | None = None) -> str:
    """The chart of one run, with the run before when given."""
    scale = scales(results, previous)
    rows = len(levels(results.figures))
    bottom = TOP + ROW * rows
    width, height = LABELS + 2 * PANEL + GAP + 60, bottom + 48
    footer = f"commit {results.commit}, {results.date}, {results.machine.get('cpus', '?')} CPUs"
    footer += f", {results.seconds:g} s a level" + (f"; the run before: {previous.commit}" if previous else "")
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}"'
        f' viewBox="0 0 {width} {height:.0f}" font-family="sans-serif" font-size="11">',
        "<title>make bench: throughput and p99 by level beside baseline (b)</title>",
        f'<rect width="{width}" height="{height:.0f}" fill="white"/>',
        *axes(scale, bottom),
        *bars(results, scale, previous),
        *baseline_lines(results, scale, bottom),
        *previous_ticks(results, previous, scale),
        _text(LABELS, height - 8, footer, fill="#666"),
        "</svg>",
    ]
    return "\n".join(body) + "\n"
