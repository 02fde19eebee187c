"""The pure parts of tools/screenshots.py (./run screenshots): URLs, the event and port it picks,
when it runs the demo, the docs copies. The browser run itself is not part of the suite."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "screenshots.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("screenshots_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_asset_paths_are_the_ui_routes(tool):
    assert tool.asset_path("campaign_sends") == "/assets/campaign_sends"
    assert tool.asset_path("campaign_analysis", "checks") == "/assets/campaign_analysis?view=checks"
    assert tool.asset_path("a/b c") == "/assets/a/b%20c"
    path = tool.asset_path("campaign_metric_snapshots", "partitions", partition="OPT-C1-1001-20261203|day_1")
    split = urlsplit(path)
    assert split.path == "/assets/campaign_metric_snapshots"
    assert parse_qs(split.query) == {"view": ["partitions"], "partition": ["OPT-C1-1001-20261203|day_1"]}
    with pytest.raises(ValueError):
        tool.asset_path("/")


def test_lineage_path_expands_every_group_once(tool):
    assert tool.lineage_path([]) == "/asset-groups"
    assert tool.lineage_path(["send", "metrics", "send"]) == "/asset-groups?expanded=global@global:metrics,global@global:send"


def test_page_url_joins_without_double_slashes(tool):
    assert tool.page_url("http://127.0.0.1:5000/", "/runs") == "http://127.0.0.1:5000/runs"
    assert tool.page_url("http://127.0.0.1:5000", "runs") == "http://127.0.0.1:5000/runs"


def event(ts: int, rows: int | None) -> dict:
    entries = [{"label": "approved"}] + ([] if rows is None else [{"label": "dagster/row_count", "intValue": rows}])
    return {"timestamp": str(ts), "partition": f"p{ts}", "metadataEntries": entries}


def test_pick_event_prefers_the_most_rows_then_the_newest(tool):
    # A later re-run of the day that found nothing new to send must not hide the demo's sends.
    events = [event(300, 0), event(200, 3), event(100, 3)]
    assert tool.pick_event(events, "dagster/row_count")["timestamp"] == "200"
    assert tool.pick_event(events, None)["timestamp"] == "300"
    assert tool.pick_event([event(100, None), event(200, None)], "dagster/row_count")["timestamp"] == "200"
    assert tool.pick_event([], "dagster/row_count") is None


def test_free_port_is_bindable_and_avoids_what_it_is_told(tool):
    first = tool.free_port()
    second = tool.free_port({first})
    assert second != first
    with socket.socket() as s:
        s.bind(("127.0.0.1", second))


def test_the_demo_runs_only_when_its_folder_has_no_history(tool, tmp_path):
    assert not tool.demo_has_history(tmp_path)
    (tmp_path / "dagster_home").mkdir()
    assert not tool.demo_has_history(tmp_path)
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("")
    assert not tool.demo_has_history(tmp_path)
    (tmp_path / "simulator.db").write_bytes(b"")
    assert tool.demo_has_history(tmp_path)


def test_every_page_has_a_unique_name_and_a_route(tool):
    names = [p.name for p in tool.PAGES]
    assert len(names) == len(set(names))
    for page in tool.PAGES:
        assert page.path.startswith(("/assets/", "/asset-groups", "/runs")), page
        assert page.ready_text
        assert (page.asset is not None) or not (page.event_by or page.latest_partition), page


def test_docs_copies_are_palette_pngs_smaller_than_the_shot(tool, tmp_path):
    from PIL import Image, ImageDraw

    shot = tmp_path / "shot.png"
    image = Image.new("RGB", (800, 500), "white")
    draw = ImageDraw.Draw(image)
    for i in range(0, 800, 7):  # anti-aliased text and lines give a screenshot many colours
        draw.line((i, 0, 800 - i, 500), fill=(i % 256, (3 * i) % 256, 200))
    image.save(shot)
    copy = tool.small_copy(shot, tmp_path / "docs" / "shot.png")
    with Image.open(copy) as reduced:
        assert reduced.mode == "P"
        assert reduced.size == (800, 500)
    assert copy.stat().st_size < shot.stat().st_size
