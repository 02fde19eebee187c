"""The seven-day curves as a PNG (matplotlib, drawn off-screen with the Agg canvas; plain
functions, no Dagster).

Top row: Delivered, Unique Opens, Unique Clicks and Unique Unsubscribes by snapshot day; bottom
row: the delivery, open, click and unsubscribe rates. One line per campaign (the newest few).
A hollow marker is a provisional snapshot (taken before its day came); a red triangle marks a
count Cheetah restated downwards. matplotlib is imported when a chart is drawn, never when the
code location loads, and no global backend is set (the figure draws on its own Agg canvas).
"""

from __future__ import annotations

import io
from pathlib import Path

from .analysis import OPTIMOVE_METRICS, RATES, AnalysisResult, CampaignAnalysis

#: Campaigns drawn (newest sends first); the tables list them all.
CHART_CAMPAIGNS = 8
CHART_FILE = "campaign_curves.png"
_RATE_TITLES = {"delivery_rate": "Delivery rate", "open_rate": "Open rate", "click_rate": "Click rate", "unsubscribe_rate": "Unsubscribe rate"}


def _label(c: CampaignAnalysis, names: dict[str, str]) -> str:
    name = names.get(c.cheetah_name) or c.campaign_id or c.cheetah_name
    when = f"{c.send_date:%m-%d}" if c.send_date else "?"
    text = f"{name} · {c.template_id or '?'} · {when}"
    return text if len(text) <= 48 else text[:47] + "…"


def curves_png(result: AnalysisResult, names: dict[str, str] | None = None, *, limit: int = CHART_CAMPAIGNS, dpi: int = 72) -> bytes:
    """The chart of the newest ``limit`` campaigns as PNG bytes (``names``: Cheetah name ->
    Optimove campaign name, for the legend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    names = names or {}
    campaigns = result.newest_first()[:limit]
    fig = Figure(figsize=(13, 6.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 4, sharex=True)
    panels = [(m, m, False) for m in OPTIMOVE_METRICS if m != "Sent"] + [(k, _RATE_TITLES[k], True) for k in RATES]
    for ax, (key, title, is_rate) in zip(axes.flat, panels):
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.set_xticks(range(1, 8))
        if is_rate:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
        for i, c in enumerate(campaigns):
            color = f"C{i % 10}"
            days = [p.day for p in c.curve]
            values = [(p.rates()[key] if is_rate else p.counts[key]) for p in c.curve]
            ys = [float("nan") if v is None else v for v in values]
            ax.plot(days, ys, color=color, linewidth=1.5, label=_label(c, names))
            for p, y in zip(c.curve, ys):
                ax.plot([p.day], [y], marker="o", markersize=5, color=color, markerfacecolor="white" if p.provisional else color)
                if not is_rate and key in p.restated:
                    ax.plot([p.day], [y], marker="v", markersize=9, color="red", linestyle="none")
    for ax in axes[1]:
        ax.set_xlabel("snapshot day")
    if campaigns:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(campaigns)), fontsize=8, frameon=False)
    fig.suptitle(
        "Seven-day curves" + (f" of the {len(campaigns)} newest campaigns" if campaigns else ": no snapshot yet")
        + "  (hollow: provisional, ▼: restated)",
        fontsize=11,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return _small(buffer.getvalue())


def _small(png: bytes, colors: int = 64) -> bytes:
    """The PNG with a 64-colour palette: a line chart looks the same at about a quarter of the
    bytes (it is embedded in every analysis's event, base64 and all)."""
    from PIL import Image  # pillow: matplotlib's own dependency

    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=colors)
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
