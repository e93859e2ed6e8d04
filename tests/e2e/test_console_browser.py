"""The web console in real headless Chromium over a real local run.

Given the local runtime (Tansu, moto, the stream functions' mappings and the `console` component on a
free port) with a small run of orders, a margin run with one member short of collateral and the
settlement instructions of the first date; when the console is opened with an operator token and with
a member token, then the operator sees every member, the pipeline health and an order's life, the
member sees only its own rows, and the page refreshes by itself as new orders are processed.
Screenshots: docs/screenshots/console-operator.png and console-member.png. Everything the test starts
(the runtime's processes, chromedriver and Chromium) is stopped in `finally` blocks.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import pytest
from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
STREAM_FUNCTIONS = ["ValidateOrdersFunction", "MatchOrdersFunction", "ClearTradesFunction"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from clearing.services.reports import run_margin, settle_eod
    from clearing_tools.cli.context import local_store, reference_data
    from clearing_tools.local.demo import publish_orders
    from clearing_tools.local.runtime import LocalRuntime

    cfg = RuntimeConfig(
        state_dir=tmp_path_factory.mktemp("console"),
        broker_port=free_port(),
        moto_port=free_port(),
        console_port=free_port(),
        functions=[*STREAM_FUNCTIONS, "ExchangeGatewayFunction"],  # with the simulator and the FIX proxy
        exchange_sim_port=free_port(),
        exchange_sim_control_port=free_port(),
        proxy_gateway_port=free_port(),
        proxy_health_port=free_port(),
        extra_components=["console"],
        batching_window_cap_s=0.05,
    )
    runtime = LocalRuntime(cfg, owner_pid=os.getpid())
    try:
        runtime.start()
        publish_orders(cfg, 600, rate=0, seed=5, id_prefix="B1-")
        runtime.wait_until_idle(timeout=180)
        store = local_store(cfg)
        refdata = reference_data(store)
        poor = dataclasses.replace(refdata.members["MBR03"], collateral=Decimal("1000"))
        run_margin(store, dataclasses.replace(refdata, members={**refdata.members, "MBR03": poor}))
        dates = sorted({o["settlement_date"] for o in store.query("obligations", "MBR01", index="gsi1")})
        settle_eod(store, refdata, dates[0])
        yield cfg, runtime
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM and CHROMEDRIVER, (
        "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="clearing-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1440,2000",
    ):
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        if driver is not None:
            driver.quit()  # stops Chromium and chromedriver
        shutil.rmtree(profile, ignore_errors=True)


def token(cfg: RuntimeConfig, member: str | None = None, operator: bool = False) -> str:
    from clearing_tools.local.console import issue_token, signing_secret

    return issue_token(signing_secret(cfg.state_path), member, operator)


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - the page is still rendering
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def open_console(driver, cfg: RuntimeConfig, tok: str | None) -> None:
    driver.get("about:blank")
    url = f"http://{cfg.host}:{cfg.console_port}/"
    driver.get(url)
    driver.execute_script("sessionStorage.clear()")
    driver.get(url + (f"#token={tok}" if tok else ""))
    driver.refresh()  # a fresh document reads the fragment's token on load
    if tok:
        wait_for(
            lambda: driver.find_element("tag name", "body").get_attribute("data-loaded") == "true",
            what="load",
        )


def column(driver, table_id: str, index: int) -> list[str]:
    cells = driver.find_elements("css selector", f"#{table_id} tbody tr td:nth-child({index})")
    return [c.text for c in cells]


def test_the_operator_sees_every_member_the_health_and_an_orders_life(stack, browser):
    cfg, _ = stack
    open_console(browser, cfg, token(cfg, operator=True))
    assert "#token=" not in browser.current_url  # the token does not stay in the address bar
    who = browser.find_element("id", "whoami")
    assert who.get_attribute("data-role") == "operator"
    # pipeline health: the mappings of the runtime with their lag and records done
    assert browser.find_element("id", "health-section").is_displayed()
    mappings = wait_for(lambda: column(browser, "mappings", 1), what="mappings")
    assert set(mappings) >= {"ValidateOrdersFunction.OrdersNew", "MatchOrdersFunction.OrdersAccepted"}
    assert int(column(browser, "mappings", 4)[0].replace(",", "")) >= 600  # records done
    assert {"console", "fix-proxy", "exchange-sim"} <= set(column(browser, "components", 1))
    fix = browser.find_element("id", "fix-session").text
    assert fix.startswith("running") and "seq" in fix.lower(), fix  # the FIX session's state
    assert wait_for(lambda: column(browser, "rejects", 1), what="rejects")  # the run has invalid orders
    # obligations and margin of every member, the called member's shortfall
    members = column(browser, "obligation-members", 1)
    assert len(set(members)) > 3
    calls = column(browser, "margin-calls", 1)
    assert "MBR03" in calls
    # the blotter holds trades between several members; one order's life from its link
    assert len(column(browser, "trades", 2)) > 5
    buyers = set(column(browser, "trades", 6)) | set(column(browser, "trades", 8))
    assert len(buyers) > 2
    link = browser.find_element("css selector", "#trades tbody tr td:nth-child(7) a")
    order_id = link.text
    link.click()
    steps = wait_for(
        lambda: [
            td.text for td in browser.find_elements("css selector", "#search-result tbody td:nth-child(2)")
        ],
        what=f"order life of {order_id}: " + browser.find_element("id", "search-result").text[:300],
    )
    assert steps[0] == "RECEIVED" and "ACCEPTED" in steps and "CLEARED_LEG" in steps
    assert order_id in browser.find_element("id", "search-result").text
    # a leg id from that life (as `clearing order` shows it) finds its trade
    leg_id = next(
        part.split("=", 1)[1]
        for part in browser.find_element("id", "search-result").text.replace(",", " ").split()
        if part.startswith("leg_id=")
    )
    box = browser.find_element("id", "search-input")
    box.clear()
    box.send_keys(leg_id)
    browser.find_element("css selector", "#search-form button").click()
    wait_for(
        lambda: (
            leg_id in browser.find_element("id", "search-result").text
            and "counterparty" in browser.find_element("id", "search-result").text
        ),
        what=f"the trade of leg {leg_id}",
    )
    link = browser.find_element("css selector", "#search-result p a")
    link.click()  # back to the order
    wait_for(lambda: "RECEIVED" in browser.find_element("id", "search-result").text, what="the order again")

    # live: more orders are processed while the page is open, and it shows them without a reload
    from clearing_tools.local.demo import publish_orders

    newest_before = column(browser, "trades", 2)[0]
    done_before = int(column(browser, "mappings", 4)[0].replace(",", ""))
    publish_orders(cfg, 300, rate=0, seed=6, id_prefix="B2-")
    stack[1].wait_until_idle(timeout=120)
    wait_for(lambda: column(browser, "trades", 2)[0] != newest_before, timeout=30, what="new trades on top")
    wait_for(
        lambda: int(column(browser, "mappings", 4)[0].replace(",", "")) >= done_before + 300,
        timeout=30,
        what="records done to grow",
    )
    # the orders panel: one member at a time for operators (a member is picked for them)
    wait_for(lambda: column(browser, "orders", 2), what="orders of the first member")
    picked = browser.find_element("id", "orders-member").get_attribute("value")
    assert picked != "*" and all(o.startswith(picked + ":") for o in column(browser, "orders", 2))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "console-operator.png"))  # with records/s of the new orders


def test_a_member_sees_only_its_own_rows(stack, browser):
    cfg, _ = stack
    open_console(browser, cfg, token(cfg, member="MBR01"))
    assert browser.find_element("id", "whoami").get_attribute("data-role") == "member"
    assert not browser.find_element("id", "health-section").is_displayed()
    assert set(column(browser, "obligation-members", 1)) == {"MBR01"}
    assert set(column(browser, "margin", 1)) == {"MBR01"}
    assert column(browser, "margin-calls", 1) in (["no margin calls"], [])
    orders = column(browser, "orders", 2)
    assert orders and all(o.startswith("MBR01:") for o in orders)
    buyers, sellers = column(browser, "trades", 6), column(browser, "trades", 8)
    assert buyers and all("MBR01" in pair for pair in zip(buyers, sellers, strict=True))
    assert set(buyers) | set(sellers) <= {"MBR01", "CCP"}  # the counterparty after novation is the CCP
    table = browser.find_element("id", "trades").text
    assert not any(f"MBR0{n}" in table for n in range(2, 10))
    browser.save_screenshot(str(SCREENSHOTS / "console-member.png"))

    # another member's order: not found for MBR01 (the API answers 404, as for an unknown id)
    from clearing.services.queries import list_orders
    from clearing_tools.cli.context import local_store

    theirs = list_orders(local_store(cfg), member="MBR02")[0]["order_id"]
    box = browser.find_element("id", "search-input")
    box.clear()
    box.send_keys(theirs)
    browser.find_element("css selector", "#search-form button").click()
    wait_for(
        lambda: browser.find_elements("css selector", "#search-result [data-notfound]"),
        what="not found",
    )


def test_without_a_token_the_console_asks_for_one_and_the_api_refuses(stack, browser):
    import urllib.error
    import urllib.request

    cfg, _ = stack
    open_console(browser, cfg, None)
    message = wait_for(lambda: browser.find_element("id", "message").text, what="sign-in message")
    assert "token" in message.lower()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{cfg.host}:{cfg.console_port}/api/v1/orders", timeout=10)  # noqa: S310
    assert refused.value.code == 401
