"""The Dagster web UI, in a real browser (Debian's Chromium driven by Playwright).

A webserver on loopback loads the workspace; after one materialization of a synthetic month
the browser must show the asset, its partitions and its candle checks as a user sees them.
"""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource
from playwright.sync_api import expect

from tests.conftest import free_port
from tradecore_lib.markets import get_market
from tradecore_pipelines.assets.candles import build_candle_checks, build_candles_asset
from tradecore_pipelines.resources import LakeResource

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium must not reach for the network (this machine's is closed) or a first-run dialog.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    """``dagster-webserver`` over the repository's workspace, with one materialized month."""
    home = tmp_path_factory.mktemp("dagster_home")
    data = tmp_path_factory.mktemp("data")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TRADECORE_DATA_DIR": str(data),
        "TRADECORE_LAKE_ROOT": str(data / "lake"),
    }
    market = get_market("synthetic_btc_usd")
    lake = LakeResource(
        root=str(data / "lake"), manifests_dir=str(data / "manifests"), s3=S3Resource()
    )
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        assert dg.materialize(
            [build_candles_asset(market), build_candle_checks(market)],
            instance=instance,
            resources={"lake": lake},
            partition_key="2024-02-01",
        ).success
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/server_info", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("dagster-webserver did not start:\n" + server.stdout.read().decode())
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright  # the driver starts only for this module

    assert Path(CHROMIUM).exists(), "Chromium is missing: `make test` installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        # Dagster greets a new browser with a community dialog over the page; skip it.
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda: page.get_by_role("button", name="Skip").click(),
        )
        yield page
        browser.close()


@pytest.mark.parametrize(
    "layer", ["candles", "manifest", "features", "ppo_agent", "evaluation", "signals"]
)
def test_every_layer_has_an_asset_page_in_its_market_group(webserver, page, layer):
    page.goto(f"{webserver}/assets/synthetic_btc_usd/{layer}", wait_until="domcontentloaded")
    page.get_by_role("tab", name="Lineage").wait_for(timeout=60_000)
    expect(page.get_by_text(layer, exact=True).filter(visible=True).first).to_be_visible()
    # the group is the market: its chain reads as one pipeline in the UI
    expect(
        page.get_by_text("synthetic_btc_usd", exact=True).filter(visible=True).first
    ).to_be_visible()


def test_a_description_shows_its_placeholders(webserver, page):
    # Markdown would swallow a bare <market> as an HTML tag; in a code span it reads as written
    page.goto(f"{webserver}/assets/synthetic_btc_usd/manifest", wait_until="domcontentloaded")
    page.get_by_role("tab", name="Lineage").wait_for(timeout=60_000)
    expect(page.get_by_text("<manifests folder>/synthetic_btc_usd.json").filter(
        visible=True).first).to_be_visible(timeout=30_000)


def test_candles_checks_and_partitions_are_shown(webserver, page, tmp_path):
    page.goto(
        f"{webserver}/assets/synthetic_btc_usd/candles?view=checks", wait_until="domcontentloaded"
    )
    page.get_by_text("Checks (5)").wait_for(timeout=60_000)
    for check in ("schema", "time_grid", "ohlc_sanity", "gaps", "coverage"):
        expect(page.get_by_text(check, exact=True).filter(visible=True).first).to_be_visible()
    page.get_by_text("This is a blocking asset check.").wait_for(timeout=30_000)
    page.goto(
        f"{webserver}/assets/synthetic_btc_usd/candles?view=partitions",
        wait_until="domcontentloaded",
    )
    page.get_by_text("Materialized (1)").first.wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "candles_partitions.png"))
