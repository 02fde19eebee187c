"""Screenshots of the Dagster UI on the demo, taken by headless Chromium (issue 11 item 10).

``./run screenshots`` (or ``.venv/bin/python tools/screenshots.py``):

1. installs Debian's ``chromium`` if it is missing (``apt-get update`` once, then
   ``apt-get install -y chromium``; needs root);
2. runs ``./run demo`` into the demo folder if it has no Dagster history yet;
3. starts ``./run dev`` (``dagster dev`` and the simulator) on ports nobody else uses, in a process
   group of its own, and waits until the webserver answers and the code location has loaded;
4. opens each page of ``PAGES`` in headless Chromium (through playwright, pointed at the system's
   chromium), waits for its content rather than the loading spinner, and saves a PNG;
5. stops everything it started, on success, on error and on Ctrl-C.

``--docs DIR`` also writes a small palette copy of each shot README.md shows there
(``docs/screenshots``); ``--url`` takes the shots of a UI already running instead.
Nothing here is on the production path, and CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
VIEWPORT = (1600, 1000)
# What the UI shows while it loads: spinners and grey placeholder bars.
SPINNER = "[role=progressbar][aria-label=loading], [class*=Skeleton_skeleton]"


class ScreenshotError(Exception):
    """A failure the script reports as one sentence (no traceback)."""


@dataclass(frozen=True)
class Page:
    """One screenshot: ``path`` on the webserver, and a text that shows its real content has arrived.

    ``event_by`` picks, on an asset's events view, the materialization with the largest value of
    that metadata entry (the demo's real sends, not a later re-run that found nothing new to send);
    ``latest_partition`` opens the partitions view on the latest materialized partition;
    ``click`` is a visible text clicked once the page is ready (a dialog to open); ``lineage``
    expands every asset group of the global graph, laid out top to bottom.
    """

    name: str
    path: str
    ready_text: str
    height: int = VIEWPORT[1]
    width: int = VIEWPORT[0]
    asset: str | None = None
    event_by: str | None = None
    latest_partition: bool = False
    click: str | None = None
    lineage: bool = False
    # Copied (small) to --docs: the shots README.md's "What the UI shows" uses.
    docs: bool = True


def asset_path(key: str, view: str | None = None, **params: str) -> str:
    """The UI's path of an asset's page (``/assets/a/b?view=...``): one segment per key part."""
    parts = [p for p in key.split("/") if p]
    if not parts:
        raise ValueError("an asset key needs at least one part")
    path = "/assets/" + "/".join(quote(p, safe="") for p in parts)
    query = ({"view": view} if view else {}) | params
    return path + ("?" + urlencode(query) if query else "")


def lineage_path(groups: list[str]) -> str:
    """The global asset graph with every group expanded (the UI's ids: ``global@global:<group>``)."""
    expanded = ",".join(f"global@global:{g}" for g in sorted(set(groups)))
    return "/asset-groups" + ("?" + urlencode({"expanded": expanded}, safe="@:,") if expanded else "")


def page_url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def pick_event(materializations: list[dict], key: str | None) -> dict | None:
    """The materialization with the largest integer ``key`` metadata (the newest among equals);
    the newest one when ``key`` is None or no event has it."""
    def value(event: dict) -> int:
        for entry in event.get("metadataEntries") or ():
            if entry.get("label") == key and isinstance(entry.get("intValue"), int):
                return entry["intValue"]
        return -1

    if not materializations:
        return None
    newest_first = sorted(materializations, key=lambda e: int(e["timestamp"]), reverse=True)
    if key is None:
        return newest_first[0]
    return max(newest_first, key=value)  # max keeps the first (newest) of equal values


PAGES: tuple[Page, ...] = (
    Page("lineage", "/asset-groups", "campaign_analysis", width=1200, height=2000, lineage=True),
    Page("campaign_sends", asset_path("campaign_sends", "events"), "sends", height=1150,
         asset="campaign_sends", event_by="dagster/row_count"),
    Page("campaign_metric_snapshots_partitions", asset_path("campaign_metric_snapshots", "partitions"),
         "Partitions Selected", asset="campaign_metric_snapshots", latest_partition=True),
    Page("campaign_analysis", asset_path("campaign_analysis", "events"), "curves_chart", height=1700,
         asset="campaign_analysis"),
    Page("campaign_analysis_chart", asset_path("campaign_analysis", "events"), "curves_chart",
         asset="campaign_analysis", click="[Show Markdown]"),
    Page("campaign_status", asset_path("campaign_status", "events"), "campaigns", height=1300,
         asset="campaign_status", docs=False),
    Page("runs", "/runs", "Launched by"),
    Page("campaign_analysis_checks", asset_path("campaign_analysis", "checks"), "Latest execution",
         asset="campaign_analysis"),
)


def free_port(avoid: set[int] = frozenset()) -> int:
    """A loopback port nothing listens on now, chosen by the OS (never a fixed default like 3000)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port
    raise ScreenshotError("No free loopback port could be found.")


def demo_has_history(directory: Path) -> bool:
    """True when ``./run demo`` has already written its Dagster instance and simulator state there."""
    home = directory / "dagster_home"
    return home.is_dir() and any(home.iterdir()) and (directory / "simulator.db").exists()


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium() -> str:
    found = find_chromium()
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise ScreenshotError("Chromium is missing and cannot be installed here: run `apt-get install -y chromium` as root.")
    print("Installing Debian's chromium (apt-get update, then apt-get install -y chromium)...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        if subprocess.call(cmd, env=env, stdout=subprocess.DEVNULL) != 0:
            raise ScreenshotError(f"`{' '.join(cmd)}` failed, so Chromium could not be installed.")
    found = find_chromium()
    if not found:
        raise ScreenshotError("apt-get installed chromium but no chromium executable is on PATH.")
    return found


def demo_env(directory: Path, sim_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env["CHEETAH_DEMO_DIR"] = str(directory)
    env["CHEETAH_SIM_PORT"] = str(sim_port)
    return env


def ensure_demo(directory: Path, sim_port: int) -> None:
    if demo_has_history(directory):
        print(f"Using the demo history in {directory}.", flush=True)
        return
    print(f"No demo history in {directory}: running ./run demo first...", flush=True)
    if subprocess.call([str(ROOT / "run"), "demo"], cwd=ROOT, env=demo_env(directory, sim_port)) != 0:
        raise ScreenshotError("`./run demo` failed, so there is nothing to show in the UI.")


def post_graphql(base: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        base + "/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.load(reply)


class RunningUI:
    """A Dagster UI somebody else started (``--url``): used as it is, and never stopped."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return post_graphql(self.base, query, variables)

    def stop(self) -> bool:
        return True


class DevServer:
    """``./run dev`` in a process group of its own, so that stopping it stops all it started."""

    def __init__(self, directory: Path, web_port: int, sim_port: int, log: Path):
        self.base = f"http://127.0.0.1:{web_port}"
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [str(ROOT / "run"), "dev", "-h", "127.0.0.1", "-p", str(web_port)],
            cwd=ROOT, env=demo_env(directory, sim_port), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return post_graphql(self.base, query, variables)

    def wait_ready(self, timeout: float) -> None:
        """Until the webserver answers and every code location has loaded (or failed: then say so)."""
        deadline = time.monotonic() + timeout
        query = ("{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
                 "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
        while True:
            if self.proc.poll() is not None:
                raise ScreenshotError(f"`./run dev` exited with code {self.proc.returncode} before the UI came up (see {self.log_path}).")
            try:
                entries = self.graphql(query)["data"]["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    for e in entries:
                        if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError":
                            first = e["locationOrLoadError"]["message"].strip().splitlines()[0]
                            raise ScreenshotError(f"The code location {e['name']} failed to load: {first}")
                    return
            except (urllib.error.URLError, OSError, KeyError, TypeError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ScreenshotError(f"The Dagster UI did not answer on {self.base} within {timeout:.0f} s (see {self.log_path}).")
            time.sleep(1)

    def stop(self) -> bool:
        """Ctrl-C to the whole group (dagster dev shuts its children down), then SIGTERM, then
        SIGKILL what is left; True once no process of the group is left."""
        pgid = self.proc.pid
        for sig, grace in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and group_alive(pgid):
                self.proc.poll()
                time.sleep(0.3)
            if not group_alive(pgid):
                break
        self.proc.poll()
        self._log.close()
        return not group_alive(pgid)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True  # (an unreaped leader counts until DevServer.stop's poll() reaps it)


MATERIALIZATIONS = """query ($path: [String!]!) { assetOrError(assetKey: {path: $path}) { __typename
  ... on Asset { assetMaterializations(limit: 200) { timestamp partition
    metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""


def resolve_path(spec: Page, graphql) -> str:
    """``spec.path``, completed from the running instance (which groups, which event, which partition)."""
    if spec.lineage:
        groups = [n["groupName"] for n in graphql("{ assetNodes { groupName } }")["data"]["assetNodes"]]
        return lineage_path(groups)
    if not (spec.event_by or spec.latest_partition):
        return spec.path
    reply = graphql(MATERIALIZATIONS, {"path": spec.asset.split("/")})["data"]["assetOrError"]
    events = reply.get("assetMaterializations") or []
    chosen = pick_event(events, spec.event_by)
    if chosen is None:
        raise ScreenshotError(f"{spec.asset} has no materialization to show; did ./run demo finish?")
    if spec.latest_partition:
        return asset_path(spec.asset, "partitions", partition=chosen["partition"])
    return asset_path(spec.asset, "events", time=chosen["timestamp"])


# Set before each page loads: the community sign-up dialog counts as seen, and the lineage graph
# is laid out top to bottom (at 1600 px wide, a left-to-right graph shrinks its names to "campaig…").
INIT_SCRIPT = """window.localStorage.setItem('communityNux', '1');
window.localStorage.setItem('asset-graph-direction', '"vertical"');"""


def take_shots(chromium: str, dev: "DevServer", out: Path, pages: tuple[Page, ...], timeout: float) -> list[Path]:
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ScreenshotError("The playwright package is missing: install the extra with `.venv/bin/python -m pip install -e '.[screenshots]'`.") from None
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        except PlaywrightError as exc:
            raise ScreenshotError(f"Chromium ({chromium}) did not start: {str(exc).splitlines()[0]}") from None
        try:
            for spec in pages:
                context = browser.new_context(viewport={"width": spec.width, "height": spec.height})
                context.add_init_script(INIT_SCRIPT)
                try:
                    target = out / f"{spec.name}.png"
                    try:
                        path = resolve_path(spec, dev.graphql)
                    except (urllib.error.URLError, OSError, KeyError, TypeError, ValueError) as exc:
                        raise ScreenshotError(f"The UI's GraphQL API did not say what the {spec.name} page should show ({exc!r}).") from None
                    shoot(context.new_page(), page_url(dev.base, path), spec, target, timeout)
                finally:
                    context.close()
                print(f"  {target}", flush=True)
                saved.append(target)
        finally:
            browser.close()
    return saved


def shoot(page, url: str, spec: Page, target: Path, timeout: float) -> None:
    from playwright.sync_api import Error as PlaywrightError

    try:
        page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
        page.get_by_text(spec.ready_text).first.wait_for(state="visible", timeout=timeout * 1000)
        settle(page, timeout)
        if spec.click:
            page.get_by_text(spec.click).first.click(timeout=timeout * 1000)
            settle(page, timeout)
        page.screenshot(path=str(target))
    except PlaywrightError as exc:
        try:  # what the page showed instead, for whoever reads the message
            page.screenshot(path=str(target.with_name(f"{spec.name}-failed.png")))
        except PlaywrightError:
            pass
        raise ScreenshotError(f"The {spec.name} page ({url}) did not show {spec.ready_text!r}: {str(exc).splitlines()[0]}") from None


def settle(page, timeout: float) -> None:
    """Until no loading spinner has been visible for a second and the network is quiet."""
    deadline = time.monotonic() + min(timeout, 60)
    quiet_since = None
    while True:
        if time.monotonic() > deadline:
            print(f"  (still loading after {min(timeout, 60):.0f} s: {page.url}; shot taken anyway)", flush=True)
            break
        spinning = any(s.is_visible() for s in page.locator(SPINNER).all())
        if spinning:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 1.0:
            break
        page.wait_for_timeout(250)
    try:
        page.wait_for_load_state("networkidle", timeout=5000)
    except Exception:  # the UI polls; a busy network is not an error here
        pass
    page.wait_for_timeout(500)  # let charts and layout finish their last frame


def small_copy(source: Path, target: Path, colors: int = 256) -> Path:
    """A palette PNG of ``source`` (UI shots have few colours), for docs/."""
    from PIL import Image

    with Image.open(source) as image:
        reduced = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    target.parent.mkdir(parents=True, exist_ok=True)
    reduced.save(target, optimize=True)
    return target


def start_dev(directory: Path, timeout: float) -> DevServer:
    sim_port = free_port()
    ensure_demo(directory, sim_port)
    web_port = free_port({sim_port})
    log = directory / "screenshots-dev.log"
    print(f"Starting ./run dev on http://127.0.0.1:{web_port} (simulator on {sim_port}; log {log})...", flush=True)
    dev = DevServer(directory, web_port, sim_port, log)
    try:
        dev.wait_ready(timeout)
    except BaseException:
        dev.stop()
        raise
    return dev


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from cheetah_assets import configuration

    parser = argparse.ArgumentParser(prog="./run screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", type=Path, default=None, help="demo folder (default: $CHEETAH_DEMO_DIR or .cheetah_demo)")
    parser.add_argument("--out", type=Path, default=None, help="where the full-size PNGs go (default: DEMO_DIR/screenshots)")
    parser.add_argument("--docs", type=Path, default=None, help="also write small palette copies here (e.g. docs/screenshots)")
    parser.add_argument("--only", action="append", default=[], help="only this page (repeatable): " + ", ".join(p.name for p in PAGES))
    parser.add_argument("--url", default=None, help="use a Dagster UI already running there (no demo, no ./run dev)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the UI and for each page (default 180)")
    args = parser.parse_args(argv)

    directory = (args.demo_dir or configuration.demo_dir()).resolve()
    out = (args.out or directory / "screenshots").resolve()
    pages = tuple(p for p in PAGES if not args.only or p.name in args.only)
    unknown = set(args.only) - {p.name for p in PAGES}
    dev: DevServer | RunningUI | None = None
    # A plain `kill` of this script still stops ./run dev (SystemExit runs the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if unknown:
            raise ScreenshotError(f"Unknown page {sorted(unknown)[0]!r}; the pages are: {', '.join(p.name for p in PAGES)}.")
        chromium = ensure_chromium()
        if args.url:
            dev = RunningUI(args.url)
            try:
                dev.graphql("{ __typename }")
            except (urllib.error.URLError, OSError, ValueError):
                raise ScreenshotError(f"No Dagster UI answers at {args.url}.") from None
        else:
            dev = start_dev(directory, args.timeout)
        print(f"The UI is up; taking {len(pages)} screenshots into {out}:", flush=True)
        saved = take_shots(chromium, dev, out, pages, args.timeout)
        if args.docs:
            for shot in (out / f"{p.name}.png" for p in pages if p.docs):
                copy = small_copy(shot, args.docs / shot.name)
                print(f"  {copy} ({copy.stat().st_size // 1024} KB)", flush=True)
        return 0 if saved else 1
    except ScreenshotError as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if dev is not None:
            began = time.monotonic()
            stopped = dev.stop()
            if isinstance(dev, DevServer) and stopped:
                print(f"Stopped ./run dev and everything it started ({time.monotonic() - began:.0f} s).", flush=True)
            elif not stopped:
                print(f"screenshots: some processes of ./run dev (process group {dev.proc.pid}) outlived SIGKILL.", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
