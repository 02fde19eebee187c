"""The analysis's chart file: saved where chart_dir says, and a folder that cannot be written
does not fail the analysis (the chart is a view of it) but says so."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from cheetah_assets.clock import ClockResource
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.metrics.assets import campaign_analysis
from cheetah_assets.metrics.chart import CHART_FILE

from .test_metrics import engine, mat_metadata  # noqa: F401 - fixture

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc)


def analyse(db_url, instance, chart_dir: str):
    return dg.materialize(
        [campaign_analysis],
        resources={"customer_db": CustomerDatabaseResource(url=db_url), "clock": ClockResource(fixed_now=NOW.isoformat())},
        instance=instance,
        run_config={"ops": {"campaign_analysis": {"config": {"chart_dir": chart_dir}}}},
    )


def test_the_chart_goes_to_chart_dir_and_an_unwritable_one_is_reported(db_url, engine, tmp_path):  # noqa: F811
    with dg.DagsterInstance.ephemeral() as instance:
        meta = mat_metadata(analyse(db_url, instance, str(tmp_path / "charts")))
        assert meta["curves_chart_file"] == str(tmp_path / "charts" / CHART_FILE)
        assert Path(meta["curves_chart_file"]).read_bytes().startswith(b"\x89PNG")

        blocked = tmp_path / "a-file"
        blocked.write_text("not a folder")
        result = analyse(db_url, instance, str(blocked))
        assert result.success
        meta = mat_metadata(result)
        assert "curves_chart_file" not in meta and meta["curves_chart"].startswith("![Seven-day curves](data:image/png")
        assert meta["curves_chart_file_error"].startswith(f"The curves chart could not be saved in {blocked}")
        assert "set chart_dir to a writable folder" in meta["curves_chart_file_error"]


def test_a_full_chart_stays_small():
    """Eight campaigns of seven days each (the most the chart draws), one restated, one provisional."""
    from cheetah_assets.metrics.analysis import AnalysisResult, CampaignAnalysis, CurvePoint
    from cheetah_assets.metrics.chart import CHART_CAMPAIGNS, curves_png

    campaigns = []
    for i in range(CHART_CAMPAIGNS + 2):
        curve = []
        for day in range(1, 8):
            delivered = 970 * (i + 1)
            opens = int(delivered * 0.3 * (1 - 0.5**day))
            counts = {"Sent": 1000 * (i + 1), "Delivered": delivered, "Unique Opens": opens,
                      "Unique Clicks": opens // 5, "Unique Unsubscribes": day * (i + 1)}
            curve.append(CurvePoint(day, NOW, counts, restated=("Unique Opens",) if (i, day) == (1, 3) else (),
                                    provisional=(i, day) == (2, 7)))
        send_at = NOW - dt.timedelta(days=8 + i)
        campaigns.append(CampaignAnalysis(f"OPT-C{i}-1004-{send_at:%Y%m%d}", 5000 + i, f"C{i}", "1004", send_at.date(), send_at, tuple(curve), NOW))
    png = curves_png(AnalysisResult(campaigns, NOW), {c.cheetah_name: f"Campaign number {i}" for i, c in enumerate(campaigns)})
    assert png.startswith(b"\x89PNG") and len(png) < 200_000


# ------------------------------------------------------------------------------------------------
# what the chart shows (read back from the drawn figure and the PNG itself)
# ------------------------------------------------------------------------------------------------
import io  # noqa: E402

import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cheetah_assets.metrics.analysis import AnalysisResult, CampaignAnalysis, CurvePoint  # noqa: E402
from cheetah_assets.metrics.chart import LEGEND_WIDTH, curves_figure, curves_png, legend_labels, shorten_distinct  # noqa: E402

SEND = dt.date(2026, 12, 3)


def campaign(k: int, template: str, days: int, sent: int, delivered: int, opens: int, clicks: int, unsubs: int, *, provisional_day: int | None = None) -> CampaignAnalysis:
    """A campaign whose counts grow a little each day (day 1 takes the given counts)."""
    curve = tuple(
        CurvePoint(day, NOW, {"Sent": sent, "Delivered": delivered, "Unique Opens": opens + 10 * (day - 1),
                              "Unique Clicks": clicks + 2 * (day - 1), "Unique Unsubscribes": unsubs + day - 1},
                   provisional=day == provisional_day)
        for day in range(1, days + 1)
    )
    name = f"OPT-C{k}-{template}-{SEND:%Y%m%d}"
    return CampaignAnalysis(name, 100 + k, f"C{k}", template, SEND, NOW - dt.timedelta(minutes=k), curve, NOW)


#: The demo's three campaigns of one day (the screenshot whose unsubscribe axis read 0.4%, 0.4%, 0.3%…).
DEMO = [campaign(0, "1002", 1, 942, 903, 241, 20, 1), campaign(1, "1003", 1, 9407, 8931, 2457, 420, 20),
        campaign(2, "1001", 1, 9623, 9378, 1115, 190, 37)]
DEMO_NAMES = {DEMO[0].cheetah_name: "Welcome for new sign-ups (03 Dec)",
              DEMO[1].cheetah_name: "Winter sale A/B for everyone (03 Dec)", DEMO[2].cheetah_name: "Winter sale A/B for everyone (03 Dec)"}


def drawn(campaigns, names=None):
    fig = curves_figure(AnalysisResult(list(campaigns), NOW), names)
    fig.canvas.draw()
    return fig


def visible_tick_labels(ax, which: str = "y") -> list[tuple[float, str]]:
    axis = ax.yaxis if which == "y" else ax.xaxis
    lo, hi = sorted(axis.get_view_interval())
    return [(loc, t.get_text()) for loc, t in zip(axis.get_ticklocs(), axis.get_ticklabels()) if lo - 1e-12 <= loc <= hi + 1e-12]


RANGES = {
    "the demo (unsubscribes 0.1%-0.4%)": DEMO,
    "tiny (unsubscribes 0.100%-0.104%)": [campaign(0, "1", 3, 100_000, 100_000, 50_000, 4000, 100), campaign(1, "2", 3, 100_000, 100_000, 50_100, 4010, 102)],
    "large (opens 1%-99%, unsubscribes 0%-50%)": [campaign(0, "1", 2, 1000, 1000, 10, 5, 0), campaign(1, "2", 2, 1000, 1000, 990, 900, 500)],
    "one campaign (a constant rate)": [campaign(0, "1", 1, 1000, 1000, 300, 30, 3)],
}


@pytest.mark.parametrize("campaigns", RANGES.values(), ids=RANGES.keys())
def test_every_axis_has_distinct_tick_labels_that_say_their_value(campaigns):
    fig = drawn(campaigns)
    rate_axes = fig.axes[4:8]
    for ax in fig.axes[:8]:
        ticks = visible_tick_labels(ax)
        labels = [text for _, text in ticks]
        assert len(ticks) >= 2 and all(labels), (ax.get_title(), ticks)
        assert len(set(labels)) == len(labels), (ax.get_title(), labels)
        if ax in rate_axes:  # each percent label writes its tick exactly
            for loc, text in ticks:
                assert text.endswith("%") and float(text[:-1].replace("\N{MINUS SIGN}", "-")) == pytest.approx(100 * loc, abs=1e-9), (ax.get_title(), ticks)


@pytest.mark.parametrize("days", [1, 3, 7])
def test_the_x_axis_always_shows_days_1_to_7(days):
    fig = drawn([campaign(0, "1", days, 1000, 970, 300, 30, 3)])
    for ax in fig.axes[:8]:
        lo, hi = ax.get_xlim()
        assert lo < 1 and hi > 7 and list(ax.get_xticks()) == [1, 2, 3, 4, 5, 6, 7]
    for ax in fig.axes[4:8]:  # the bottom row carries the labels (the columns share x)
        assert [text for _, text in visible_tick_labels(ax, "x")] == [str(d) for d in range(1, 8)]


@pytest.mark.parametrize("provisional", [False, True], ids=["final", "provisional"])
def test_a_one_day_campaign_shows_a_dot_in_every_panel_of_the_png(provisional):
    """Found in the PNG's own pixels at day 1's place: a disc of the campaign's colour (filled, or
    its ring when the snapshot is provisional), not a line of zero length."""
    from matplotlib.colors import to_rgb
    from PIL import Image

    one = [campaign(0, "1", 1, 1000, 970, 300, 30, 3, provisional_day=1 if provisional else None)]
    fig = drawn(one)
    image = Image.open(io.BytesIO(curves_png(AnalysisResult(one, NOW)))).convert("RGB")
    assert image.size == tuple(int(v) for v in fig.bbox.size)
    colour = tuple(round(255 * v) for v in to_rgb("C0"))
    point = one[0].curve[0]
    values = [point.counts[m] for m in ("Delivered", "Unique Opens", "Unique Clicks", "Unique Unsubscribes")] + list(point.rates().values())
    for ax, y in zip(fig.axes[:8], values):
        x_px, y_px = ax.transData.transform((1, y))
        cx, cy = round(x_px), round(image.height - y_px)
        near = [(x, yy) for x in range(cx - 6, cx + 7) for yy in range(cy - 6, cy + 7)
                if sum(abs(a - b) for a, b in zip(image.getpixel((x, yy)), colour)) <= 30]
        assert len(near) >= 12, (ax.get_title(), len(near))
        width = max(x for x, _ in near) - min(x for x, _ in near)
        height = max(yy for _, yy in near) - min(yy for _, yy in near)
        assert width >= 3 and height >= 3, (ax.get_title(), width, height)  # a disc, not a tick


def test_the_legend_tells_the_demo_campaigns_apart_and_fits_in_the_figure():
    fig = drawn(DEMO, DEMO_NAMES)
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["2026-12-03 · template 1002 · Welcome for new sign-ups (03 Dec)",
                     "2026-12-03 · template 1003 · Winter sale A/B for everyone (03 Dec)",
                     "2026-12-03 · template 1001 · Winter sale A/B for everyone (03 Dec)"]
    box, page = legend.get_window_extent(), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0


def test_eight_long_names_sharing_a_long_start_stay_distinct_and_inside_the_figure():
    prefix = "Black Friday weekend mega sale for all loyal subscribers, variant "
    many = [campaign(k, "1004", 7, 1000, 970, 300, 30, 3) for k in range(8)]
    fig = drawn(many, {c.cheetah_name: f"{prefix}{k}" for k, c in enumerate(many)})
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(set(texts)) == 8 and all(len(t) <= LEGEND_WIDTH for t in texts)
    assert all(t.startswith("2026-12-03 · template 1004 · Black") and t.endswith(f"…variant {k}") for k, t in enumerate(texts)), texts
    box, page = legend.get_window_extent(), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0


def shows(label: str, text: str, index: int) -> bool:
    """Whether ``label`` (``text`` cut into pieces joined by "…") shows ``text[index]``, or shows
    the text's end when ``index`` is past it."""
    if label == text:
        return True
    pieces, at, shown = label.split("…"), 0, []
    for i, piece in enumerate(pieces):
        at = text.find(piece, at) if i else (0 if text.startswith(piece) else -1)
        assert at >= 0, (label, text)  # every piece is a piece of the text, in order
        shown.append(range(at, at + len(piece)))
        at += len(piece)
    ends_shown = pieces[-1] != "" and text.endswith(pieces[-1])
    return any(index in r for r in shown) if index < len(text) else ends_shown


NAME_TEXT = st.text(st.characters(exclude_characters="…"), min_size=30, max_size=120)


@settings(max_examples=200, deadline=None)
@given(prefix=NAME_TEXT, suffixes=st.lists(st.text(st.characters(exclude_characters="…"), max_size=12), min_size=2, max_size=8, unique=True),
       templates=st.lists(st.sampled_from(["1001", "1003", "A-very-long-template-id"]), min_size=8, max_size=8))
def test_legend_labels_of_long_names_sharing_a_prefix_are_distinct_short_and_show_the_difference(prefix, suffixes, templates):
    campaigns = [campaign(k, templates[k], 1, 10, 10, 1, 1, 0) for k in range(len(suffixes))]
    names = {c.cheetah_name: prefix + s for c, s in zip(campaigns, suffixes)}
    labels = legend_labels(campaigns, names)
    assert len(set(labels)) == len(labels) and all(len(t) <= LEGEND_WIDTH for t in labels)
    if labels[0].startswith("1. "):  # numbered, when cutting made two alike
        return
    full = [f"2026-12-03 · template {c.template_id} · {names[c.cheetah_name]}" for c in campaigns]
    for i, (label, text) in enumerate(zip(labels, full)):
        assert label.startswith(text[:30]), label  # send date and template come first
        for j, other in enumerate(full):
            if j != i:
                first_difference = next((k for k, (a, b) in enumerate(zip(text, other)) if a != b), min(len(text), len(other)))
                assert shows(label, text, first_difference) and shows(labels[j], other, first_difference), (label, labels[j])


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.text(alphabet="ab. 1…", max_size=90), min_size=1, max_size=8), width=st.integers(16, 80))
def test_shortened_labels_are_distinct_whatever_the_texts(texts, width):
    out = shorten_distinct(texts, width)
    assert len(out) == len(texts) and all(len(t) <= width for t in out)
    assert len(set(out)) == len(out)  # texts that repeat are numbered apart as well
    assert all(t == o for t, o in zip(texts, out)) or len({*texts}) < len(texts) or any(len(t) > width for t in texts)


def test_every_campaign_keeps_its_own_colour_in_the_small_png():
    """The PNG's palette is cut to 64 colours: eight one-day campaigns (a few pixels each) still
    show in eight colours (an adaptive palette had painted the blue and the green campaign alike)."""
    from matplotlib.colors import to_rgb
    from PIL import Image

    eight = [campaign(k, str(1000 + k), 1, 1000, 900 + 10 * k, 100 + 50 * k, 10 + 5 * k, k) for k in range(8)]
    image = Image.open(io.BytesIO(curves_png(AnalysisResult(eight, NOW)))).convert("RGB")
    counts = dict((rgb, n) for n, rgb in image.getcolors(maxcolors=4096))
    for k in range(8):
        colour = tuple(round(255 * v) for v in to_rgb(f"C{k}"))
        assert sum(n for rgb, n in counts.items() if sum(abs(a - b) for a, b in zip(rgb, colour)) <= 12) >= 100, f"C{k}"


def test_rate_axes_stay_within_0_and_100_percent_for_constant_rates():
    """Every send delivered (100%), nothing opened (0%): the axes do not run past 100% or below 0%."""
    fig = drawn([campaign(0, "1", 3, 1000, 1000, 0, 0, 0)])
    for ax in fig.axes[4:8]:
        labels = [text for _, text in visible_tick_labels(ax)]
        values = [float(t[:-1].replace("\N{MINUS SIGN}", "-")) for t in labels]
        assert len(values) >= 2 and 0 <= min(values) and max(values) <= 100, (ax.get_title(), labels)
        lo, hi = ax.get_ylim()
        assert lo <= min(line.get_ydata()[0] for line in ax.get_lines()) <= hi


# ------------------------------------------------------------------------------------------------
# which campaigns the chart draws, said where it is read
# ------------------------------------------------------------------------------------------------
def test_the_chart_says_it_draws_the_newest_eight_of_how_many():
    """The review's finding: the chart drew the 8 newest campaigns and its title said "the 8 newest
    campaigns", with no word of how many there were or where the rest are."""
    from cheetah_assets.metrics.chart import CHART_CAMPAIGNS, chart_title, newest_of

    ten = [campaign(k, str(1000 + k), 2, 1000, 970, 300, 30, 3) for k in range(10)]
    fig = drawn(ten)
    title = fig._suptitle.get_text()
    assert title.startswith(f"Seven-day curves of the {CHART_CAMPAIGNS} newest of 10 campaigns (by send time); "
                            "the campaigns table lists all 10\n")
    (legend,) = fig.legends
    assert len(legend.get_texts()) == CHART_CAMPAIGNS
    assert drawn(ten[:3])._suptitle.get_text().startswith("Seven-day curves of all 3 campaigns\n")
    assert drawn(ten[:1])._suptitle.get_text().startswith("Seven-day curves of the one campaign\n")
    assert chart_title(0, 0) == "Seven-day curves: no snapshot yet"
    assert [newest_of(8, n) for n in (0, 1, 8, 9)] == [
        "no campaign yet", "the one campaign", "all 8 campaigns", "the 8 newest of 9 campaigns (by send time)"]


def test_the_analysis_metadata_says_which_campaigns_the_chart_and_curves_table_hold(tmp_path):
    from types import SimpleNamespace

    from cheetah_assets.metrics.assets import CURVE_TABLE_CAMPAIGNS, AnalysisConfig, chart_metadata
    from cheetah_assets.metrics.chart import CHART_CAMPAIGNS

    ten = [campaign(k, str(1000 + k), 2, 1000, 970, 300, 30, 3) for k in range(10)]
    meta = chart_metadata(SimpleNamespace(), AnalysisConfig(chart_dir=str(tmp_path)), AnalysisResult(ten, NOW), {})
    assert meta["curves_chart_campaigns"].value == f"the {CHART_CAMPAIGNS} newest of 10 campaigns (by send time)"
    assert meta["curves_chart"].value.endswith(
        f"\n\nThe chart draws the {CHART_CAMPAIGNS} newest of 10 campaigns (by send time); the campaigns table lists all 10.")
    assert CURVE_TABLE_CAMPAIGNS >= 10 and meta["curves_table_campaigns"].value == "all 10 campaigns"
