#!/usr/bin/env python3
"""Draws the headline benchmark comparisons as SVG, straight from the Markdown tables.

    scripts/plot_bench.py RESULTS.md OUT_DIR

RESULTS.md is docs/benchmarks.md or the output of scripts/bench.sh (which calls this on its
own run). Tables are found by their header (the first table with the columns a plot needs),
so both files work; a plot whose table is missing is skipped with a line on stderr. Each bar
is labelled with its cell's text, so a plot shows exactly the table's numbers; a range
"a–b" (two runs) is a bar to a with a whisker to b. No plotting library: the SVG is written
by hand (python3 only).
"""
import math
import os
import re
import sys
from xml.sax.saxutils import escape

COLORS = {"native": "#8c8c8c", "libgreen": "#2e9e4f", "libuv": "#3b6fb6", "gevent": "#d08a2c"}
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
PANEL_W, PANEL_H, TOP, BOTTOM, LEFT = 300, 360, 58, 62, 58
ROOM = 0.72  # the tallest bar's share of the height: the rest is for its vertical label


def tables(markdown):
    """Every table as (header cells, [row cells])."""
    found, current = [], None
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if current is None:
                current = (cells, [])
                found.append(current)
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current[1].append(cells)
        else:
            current = None
    return found


def find_table(markdown, *columns, without=("concurrency", "connections")):
    """The first table whose header has a cell containing each of columns (in any order, the
    first such cell) and none starting with a word of without that is not asked for:
    {column: index}, rows."""
    for header, rows in tables(markdown):
        if any(h.lower().startswith(w) for h in header for w in without if w not in columns):
            continue
        index = {}
        for want in columns:
            hit = next((i for i, h in enumerate(header) if want in h.lower()), None)
            if hit is None:
                break
            index[want] = hit
        if len(index) == len(columns):
            return index, rows
    return None, None


def number(cell):
    """(low, high, label) of a cell such as '**5.09–5.24 s**', '121.6 MiB' or '10,001';
    values in MiB for sizes given in KiB or MiB. None when the cell holds no number."""
    text = cell.replace("**", "").strip()
    nums = re.findall(r"\d[\d,]*(?:\.\d+)?", text)
    if not nums:
        return None
    values = [float(n.replace(",", "")) for n in nums[:2]]
    label = re.sub(r"\s*(s|ms|MiB|KiB)$", "", text)
    return values[0], values[-1], label


def svg_bar_panel(x0, title, unit, groups, series, values, log=False, ideal=None):
    """One panel of grouped bars. values[(group, serie)] = (low, high, label)."""
    out = []
    plot_h = PANEL_H - TOP - BOTTOM
    plot_w = PANEL_W - LEFT - 12
    top = max(v[1] for v in values.values())
    if ideal:
        top = max(top, ideal[0])
    if log:  # from 0.5, so that a bar of 1 (one OS thread) is seen
        lo_exp = math.log10(0.5)
        hi_exp = max(1.0, lo_exp + (math.log10(top) - lo_exp) / ROOM)
        scale = lambda v: plot_h * (math.log10(max(v, 0.5)) - lo_exp) / (hi_exp - lo_exp)
        ticks = [10 ** e for e in range(0, int(math.floor(hi_exp)) + 1)]
    else:
        hi = top / ROOM
        base = 10 ** math.floor(math.log10(hi))
        step = next(base * m for m in (1, 0.5, 0.2, 0.1) if hi / (base * m) >= 4)
        scale = lambda v: plot_h * v / hi
        ticks = [step * i for i in range(int(hi // step) + 1)]
    base_y = TOP + plot_h
    out.append(f"<text x='{x0 + PANEL_W / 2}' y='22' text-anchor='middle' font-size='14' "
               f"font-weight='bold' {FONT}>{escape(title)}</text>")
    out.append(f"<text x='{x0 + PANEL_W / 2}' y='40' text-anchor='middle' font-size='11' "
               f"fill='#555' {FONT}>{escape(unit)}{' (log scale)' if log else ''}</text>")
    for t in ticks:
        y = base_y - scale(t)
        out.append(f"<line x1='{x0 + LEFT}' y1='{y:.1f}' x2='{x0 + LEFT + plot_w}' y2='{y:.1f}' "
                   "stroke='#e4e4e4' stroke-width='1'/>")
        label = f"{t:,.0f}" if abs(t - round(t)) < 1e-9 else f"{t:.1f}"
        out.append(f"<text x='{x0 + LEFT - 5}' y='{y + 4:.1f}' text-anchor='end' font-size='10' "
                   f"fill='#555' {FONT}>{label}</text>")
    out.append(f"<line x1='{x0 + LEFT}' y1='{base_y}' x2='{x0 + LEFT + plot_w}' y2='{base_y}' "
               "stroke='#333' stroke-width='1'/>")
    group_w = plot_w / len(groups)
    present = [s for s in series if any((g, s) in values for g in groups)]
    bar_w = min(34, (group_w - 14) / max(1, len(present)))
    for gi, group in enumerate(groups):
        gx = x0 + LEFT + gi * group_w + (group_w - bar_w * len(present)) / 2
        for si, serie in enumerate(present):
            if (group, serie) not in values:
                continue
            low, high, label = values[(group, serie)]
            x = gx + si * bar_w
            h = scale(low)
            out.append(f"<rect x='{x + 1:.1f}' y='{base_y - h:.1f}' width='{bar_w - 2:.1f}' "
                       f"height='{h:.1f}' fill='{COLORS.get(serie, '#777')}'>"
                       f"<title>{escape(group)}, {escape(serie)}: {escape(label)}</title></rect>")
            if high != low:
                yh = base_y - scale(high)
                cx = x + bar_w / 2
                out.append(f"<line x1='{cx:.1f}' y1='{base_y - h:.1f}' x2='{cx:.1f}' y2='{yh:.1f}' "
                           "stroke='#222' stroke-width='1.2'/>")
                out.append(f"<line x1='{cx - 5:.1f}' y1='{yh:.1f}' x2='{cx + 5:.1f}' y2='{yh:.1f}' "
                           "stroke='#222' stroke-width='1.2'/>")
            ytext = base_y - scale(high) - 4
            xtext = x + bar_w / 2 + 3.5
            out.append(f"<text x='{xtext:.1f}' y='{ytext:.1f}' text-anchor='start' "
                       f"font-size='10' {FONT} transform='rotate(-90 {xtext:.1f} {ytext:.1f})'>"
                       f"{escape(label)}</text>")
        out.append(f"<text x='{x0 + LEFT + (gi + 0.5) * group_w:.1f}' y='{base_y + 16}' "
                   f"text-anchor='middle' font-size='11' {FONT}>{escape(group)}</text>")
    if ideal:
        y = base_y - scale(ideal[0])
        out.append(f"<line x1='{x0 + LEFT}' y1='{y:.1f}' x2='{x0 + LEFT + plot_w}' y2='{y:.1f}' "
                   "stroke='#c0392b' stroke-dasharray='5,3' stroke-width='1.3'/>")
        out.append(f"<text x='{x0 + LEFT + plot_w}' y='{y - 4:.1f}' text-anchor='end' "
                   f"font-size='10' fill='#c0392b' {FONT}>{escape(ideal[1])}</text>")
    return out


def write_figure(path, caption, panels, series):
    width = PANEL_W * len(panels)
    height = PANEL_H + 44
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}'>",
             f"<rect width='{width}' height='{height}' fill='white'/>"]
    for i, panel in enumerate(panels):
        parts += svg_bar_panel(i * PANEL_W, **panel)
    present = [s for s in series if any(s == k[1] for p in panels for k in p["values"])]
    x = 12
    y = PANEL_H + 8
    for serie in present:
        parts.append(f"<rect x='{x}' y='{y}' width='12' height='12' fill='{COLORS.get(serie, '#777')}'/>")
        parts.append(f"<text x='{x + 17}' y='{y + 10}' font-size='12' {FONT}>{escape(serie)}</text>")
        x += 30 + 8 * len(serie)
    parts.append(f"<text x='{x + 10}' y='{y + 10}' font-size='11' fill='#555' {FONT}>"
                 f"{escape(caption)}</text>")
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    print(f"plot_bench: wrote {path}")


# The figures: the table's columns (a header cell containing each), the column that names
# the groups on the x axis (None: one group, named by "single"), rows kept (column, value),
# and one panel per (column, title, unit, log scale); a unit of None is read from the cells.
SERIES = ["libuv", "native", "libgreen", "gevent"]
THREADS = ("os threads", "OS threads", "count", True)
FIGURES = [
    dict(file="echo.svg", group="connections",
         columns=("connections", "server", "round trips/s", "peak rss", "os threads"),
         caption="x: connections; thread per connection vs the libuv event loop",
         panels=[("round trips/s", "Echo throughput", "64-byte round trips/s", False),
                 ("peak rss", "Peak RSS", "KiB", True), THREADS]),
    dict(file="slow_upstream.svg", group="concurrency", keep=("client", "http_load"),
         columns=("concurrency", "client", "server", "total", "peak rss", "os threads"),
         caption="x: concurrency C; legacy_http_server, 1 s handler, http_load",
         ideal=("total", 4.0, "ideal 4 s"),
         panels=[("total", "Slow upstream: total time", "s, 4 × C requests", False),
                 ("peak rss", "Peak RSS", None, False), THREADS]),
    dict(file="uwsgi.svg", group=None, single="uWSGI",
         columns=("server", "total", "mean latency", "os threads"),
         caption="1,000 threads (native, libgreen) vs gevent; 1 s view",
         panels=[("total", "uWSGI + Flask", "s for ab -c 1000 -n 2000", False), THREADS]),
    dict(file="idle.svg", group="connections",
         columns=("connections", "server", "peak rss", "per connection", "os threads"),
         caption="x: connections held open, nothing sent",
         panels=[("per connection", "Idle connections", "KiB per connection", False), THREADS]),
]


def series_name(cell):
    """A row's series: the server's name, or for rows named in words (uWSGI) the word in it."""
    c = cell.replace("**", "").strip().lower()
    for name in ("gevent", "libgreen", "libuv"):
        if name in c:
            return name
    return "native"


def draw(md, out, fig):
    idx, rows = find_table(md, *fig["columns"])
    if not rows:
        print(f"plot_bench: no table with {', '.join(fig['columns'])}: {fig['file']} skipped",
              file=sys.stderr)
        return
    if "keep" in fig:
        col, value = fig["keep"]
        kept = [r for r in rows if r[idx[col]].replace("**", "") == value]
        rows = kept or rows
    panels = []
    for col, title, unit, log in fig["panels"]:
        if unit is None:
            unit = "MiB" if any("MiB" in r[idx[col]] for r in rows) else "KiB"
        groups, values = [], {}
        for r in rows:
            n = number(r[idx[col]])
            if n is None:
                continue
            group = r[idx[fig["group"]]].replace("**", "") if fig["group"] else fig["single"]
            if group not in groups:
                groups.append(group)
            values.setdefault((group, series_name(r[idx["server"]])), n)
        ideal = fig.get("ideal")
        panels.append(dict(title=title, unit=unit, groups=groups, series=SERIES, values=values,
                           log=log, ideal=ideal[1:] if ideal and ideal[0] == col else None))
    write_figure(os.path.join(out, fig["file"]), fig["caption"], panels, SERIES)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        md = f.read()
    os.makedirs(argv[2], exist_ok=True)
    for fig in FIGURES:
        draw(md, argv[2], fig)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
