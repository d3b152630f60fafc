"""The live provenance log in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium): an admin signs in with a JWT, sees the log, and a
row inserted in the database appears on the open page within two seconds."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from aerelion import local_identity
from aerelion.app import create_app
from aerelion.standins.server import LoopbackServer
from support import RUNTIME_SECRETS, new_user, settings_for

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HAVE_BROWSER = os.path.exists(CHROMIUM) and shutil.which(CHROMEDRIVER) is not None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not HAVE_BROWSER and os.environ.get("AERELION_REQUIRE_BROWSER") != "1",
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]


@pytest.fixture(scope="module")
def server(database) -> Iterator[str]:
    app = create_app(settings=settings_for(**RUNTIME_SECRETS), database_url=database)
    loopback = LoopbackServer(app, "aerelion-app", lifespan="on")
    yield loopback.start()
    loopback.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="aerelion-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def insert_row(database: str, message: str, level: str = "info", **details: str) -> None:
    """A log row as any writer leaves it (the same SQL function the runtime calls)."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "select public.record_edge_function_log(%s, %s, 200, 4, null, '127.0.0.1', %s, %s)",
            ["browser-test", message, psycopg.types.json.Jsonb(details), level],
        )


def wait_for(condition, timeout: float = 10.0) -> float:
    """Seconds until `condition()` is true (fails after `timeout`)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail("the page never showed it")
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_new_row_appears_on_the_open_page_within_two_seconds(browser, server, database):
    from selenium.webdriver.common.by import By

    with psycopg.connect(database, autocommit=True) as conn:
        admin = new_user(conn, admin=True)
    token = local_identity.sign(
        local_identity.user_claims(admin, "admin@example.com"),
        RUNTIME_SECRETS["SUPABASE_JWT_SECRET"],
    )
    insert_row(database, "already there", "warn", agent_id="AG-03")

    browser.get(server + "/nexus/logs")
    assert "jwt" not in browser.current_url.lower()
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "signin-button").click()
    wait_for(lambda: "already there" in browser.find_element(By.ID, "rows").text)
    wait_for(lambda: browser.find_element(By.ID, "live").text == "LIVE_SYNC")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#agents li")) == 7
    assert browser.find_element(By.ID, "mode").text == "MODE: STEALTH"

    marker = f"live-{uuid.uuid4().hex[:12]}"
    insert_row(database, marker, "error")
    seconds = wait_for(lambda: marker in browser.find_element(By.ID, "rows").text)
    assert seconds < 2.0, f"the row took {seconds:.2f} s"
    newest = browser.find_element(By.CSS_SELECTOR, "#rows tr")
    assert marker in newest.text and newest.get_attribute("data-level") == "error"
    assert token not in browser.current_url

    # A WAR_ROOM transition is highlighted; filtering by level reloads the page's rows.
    insert_row(database, "OPERATIONAL_MODE_TRANSITION: SENTINEL → WAR_ROOM", "error")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#rows tr.war-room"))
    level = browser.find_element(By.ID, "filter-level")
    level.find_element(By.CSS_SELECTOR, "option[value='warn'], option:nth-child(3)").click()
    wait_for(
        lambda: (
            all(
                row.get_attribute("data-level") == "warn"
                for row in browser.find_elements(By.CSS_SELECTOR, "#rows tr")
            )
            and "already there" in browser.find_element(By.ID, "rows").text
        )
    )
