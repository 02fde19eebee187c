"""The seven-day curves as a PNG (matplotlib, drawn off-screen with the Agg canvas; plain
functions, no Dagster).

Top row: Delivered, Unique Opens, Unique Clicks and Unique Unsubscribes by snapshot day; bottom
row: the delivery, open, click and unsubscribe rates. One line per campaign (the newest
:data:`CHART_CAMPAIGNS` by send time; the title says how many of how many, as
:func:`newest_of` words it, and so does the analysis's ``curves_chart_campaigns``), a
dot on every snapshot (so a campaign with one day of data shows), and the x axis always runs over
days 1..7 (a partial week reads as partial). A hollow dot is a provisional snapshot (taken before
its day came); a red triangle marks a count Cheetah restated downwards. The legend, shared below
the panels, names each campaign by send date, template and name, in that order, so the part that
tells campaigns apart comes first; a label too long for its column is cut around where it differs
from the others, and labels are always distinct. Percent ticks get as many decimals as their step
needs, so no two read the same. matplotlib is imported when a chart is drawn, never when the code
location loads, and no global backend is set (the figure draws on its own Agg canvas).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from .analysis import OPTIMOVE_METRICS, RATES, AnalysisResult, CampaignAnalysis
from .snapshots import DAYS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Campaigns drawn (newest sends first); the tables list them all.
CHART_CAMPAIGNS = 8
CHART_FILE = "campaign_curves.png"
#: Legend columns, and the characters a label may take in one (fits at font size 8 in a 13-inch figure).
LEGEND_COLUMNS = 2
LEGEND_WIDTH = 70
_RATE_TITLES = {"delivery_rate": "Delivery rate", "open_rate": "Open rate", "click_rate": "Click rate", "unsubscribe_rate": "Unsubscribe rate"}


def newest_of(shown: int, total: int) -> str:
    """Which campaigns a chart or table of the newest ``shown`` of ``total`` holds, in words."""
    if total <= 0:
        return "no campaign yet"
    if total == 1:
        return "the one campaign"
    if shown >= total:
        return f"all {total} campaigns"
    return f"the {shown} newest of {total} campaigns (by send time)"


def chart_title(shown: int, total: int) -> str:
    """The chart's title: what it shows (:func:`newest_of`), where the rest are, and its marks."""
    if total <= 0:
        return "Seven-day curves: no snapshot yet"
    rest = f"; the campaigns table lists all {total}" if shown < total else ""
    return f"Seven-day curves of {newest_of(shown, total)}{rest}\nhollow dot: provisional · ▼: restated"


def _label(c: CampaignAnalysis, names: dict[str, str]) -> str:
    name = names.get(c.cheetah_name) or c.campaign_id or c.cheetah_name
    when = f"{c.send_date:%Y-%m-%d}" if c.send_date else "?"
    return f"{when} · template {c.template_id or '?'} · {name}"


def legend_labels(campaigns: list[CampaignAnalysis], names: dict[str, str] | None = None, width: int = LEGEND_WIDTH) -> list[str]:
    """One legend label per campaign: send date · template · name, at most ``width`` characters,
    all distinct (two campaigns alike in all three also show their Cheetah names)."""
    full = [_label(c, names or {}) for c in campaigns]
    full = [f"{text} ({c.cheetah_name})" if full.count(text) > 1 else text for text, c in zip(full, campaigns)]
    return shorten_distinct(full, width)


def shorten_distinct(texts: list[str], width: int) -> list[str]:
    """``texts`` cut to ``width`` characters each (``width`` >= 16) so that different texts stay
    different: a text longer than ``width`` keeps its start and, when it shares a long start with
    another, the stretch from where they differ (``start…difference…``). Should cuts still make two
    alike (or the texts repeat), every label is numbered ``1. ``, ``2. ``… in order."""
    out = [_cut(t, max((_common_prefix(t, o) for j, o in enumerate(texts) if j != i), default=0), width) for i, t in enumerate(texts)]
    if len(set(out)) == len(out):
        return out
    numbered = []
    for i, t in enumerate(texts, 1):
        prefix = f"{i}. "
        numbered.append(prefix + _cut(t, 0, width - len(prefix)))
    return numbered


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _cut(text: str, shared: int, width: int) -> str:
    """``text`` in ``width`` characters, showing its character ``shared`` (where it first differs
    from the text most like it): the start, or ``start…difference…`` with the difference's word."""
    if len(text) <= width:
        return text
    if shared < width - 1:  # the start already tells it apart
        return text[: width - 1] + "…"
    space = text.rfind(" ", shared - 16, shared - 1)
    start = space + 1 if space >= 0 else shared - 6  # from the word where it differs
    rest = text[start:]
    head = min(max(width // 2, width - 1 - len(rest)), start)  # as much of the start as that leaves room for
    room = width - head - 1
    return text[:head] + "…" + (rest if len(rest) <= room else rest[: room - 1] + "…")


def _percent_formatter():
    """Percent ticks (of fractions) with the fewest decimals that write every tick exactly, chosen
    from the ticks drawn: a 0.05% step gets two decimals, a 10% step none."""
    from matplotlib.ticker import Formatter

    class StepPercentFormatter(Formatter):
        decimals = 1

        def set_locs(self, locs):
            super().set_locs(locs)
            pcts = [100 * v for v in locs if math.isfinite(v)]
            steps = [abs(b - a) for a, b in zip(pcts, pcts[1:]) if b != a]
            step = min(steps) if steps else 1.0
            for d in range(0, 7):
                if all(abs(round(p, d) - p) <= step * 1e-6 for p in pcts):
                    break
            self.decimals = d

        def __call__(self, x, pos=None):
            return f"{100 * x:.{self.decimals}f}%"

    return StepPercentFormatter()


def _within_0_100(ax) -> None:
    """A rate axis kept to 0%..100% (and a little room for the dots) unless the data goes beyond:
    matplotlib widens a constant curve's axis to both sides (a 97% delivery rate read up to 102%)."""
    data = [y for line in ax.get_lines() for y in line.get_ydata() if math.isfinite(y)]
    if data:
        lo, hi = ax.get_ylim()
        pad = 0.03 * (hi - lo)
        ax.set_ylim(max(lo, min(0.0, min(data)) - pad), min(hi, max(1.0, max(data)) + pad))


def curves_figure(result: AnalysisResult, names: dict[str, str] | None = None, *, limit: int = CHART_CAMPAIGNS, dpi: int = 72) -> Figure:
    """The chart of the newest ``limit`` campaigns (``names``: Cheetah name -> Optimove campaign
    name, for the legend), on its own Agg canvas, not yet drawn; its title says how many of all."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    campaigns = result.newest_first()[:limit]
    labels = legend_labels(campaigns, names)
    fig = Figure(figsize=(13, 6.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 4, sharex=True)
    panels = [(m, m, False) for m in OPTIMOVE_METRICS if m != "Sent"] + [(k, _RATE_TITLES[k], True) for k in RATES]
    for ax, (key, title, is_rate) in zip(axes.flat, panels):
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.set_xticks(list(DAYS))
        ax.set_xlim(DAYS[0] - 0.5, DAYS[-1] + 0.5)
        if is_rate:
            ax.yaxis.set_major_formatter(_percent_formatter())
        else:  # counts are whole numbers
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        for i, (c, label) in enumerate(zip(campaigns, labels)):
            color = f"C{i % 10}"
            days = [p.day for p in c.curve]
            values = [(p.rates()[key] if is_rate else p.counts[key]) for p in c.curve]
            ys = [float("nan") if v is None else v for v in values]
            ax.plot(days, ys, color=color, linewidth=1.5, marker="o", markersize=5, label=label)
            hollow = [(p.day, y) for p, y in zip(c.curve, ys) if p.provisional]
            if hollow:
                ax.plot(*zip(*hollow), marker="o", markersize=5, color=color, markerfacecolor="white", linestyle="none")
            restated = [(p.day, y) for p, y in zip(c.curve, ys) if not is_rate and key in p.restated]
            if restated:
                ax.plot(*zip(*restated), marker="v", markersize=9, color="red", linestyle="none")
        if is_rate:
            _within_0_100(ax)
    for ax in axes[1]:
        ax.set_xlabel("snapshot day")
    if campaigns:
        handles, _ = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(LEGEND_COLUMNS, len(campaigns)), fontsize=8, frameon=False)
    fig.suptitle(chart_title(len(campaigns), len(result.campaigns)), fontsize=11)
    return fig


def curves_png(result: AnalysisResult, names: dict[str, str] | None = None, *, limit: int = CHART_CAMPAIGNS, dpi: int = 72) -> bytes:
    """The chart of :func:`curves_figure` as PNG bytes."""
    buffer = io.BytesIO()
    curves_figure(result, names, limit=limit, dpi=dpi).savefig(buffer, format="png", dpi=dpi)
    return _small(buffer.getvalue())


def _small(png: bytes) -> bytes:
    """The PNG with a fixed palette of at most 64 colours: a line chart looks the same at about a
    quarter of the bytes (it is embedded in every analysis's event, base64 and all). The palette
    holds every campaign colour exactly (an adaptive one, median cut, merged the blue and green
    lines when they had few pixels), the red of the restated mark, their blends with white (the
    anti-aliased edges) and 16 greys (text, grid)."""
    from matplotlib.colors import to_rgb
    from PIL import Image  # pillow: matplotlib's own dependency

    base = [to_rgb(f"C{i}") for i in range(10)] + [to_rgb("red")]
    colours = [tuple(round(255 * (1 - t * (1 - v))) for v in rgb) for rgb in base for t in (1.0, 0.6, 0.3)]
    colours += [(g, g, g) for g in range(0, 256, 17)]
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for rgb in colours for v in rgb])
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def save_png(png: bytes, directory: str | Path, file_name: str = CHART_FILE) -> Path:
    """Write ``png`` to ``directory/file_name`` (directory created), atomically (a reader never
    sees half a file); returns the path."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(png)
    tmp.replace(path)
    return path
