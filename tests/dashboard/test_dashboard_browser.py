"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver through selenium), on a real
local cluster under load: sign in, find the app and model, see the rate move, scale 1 -> 2 from the page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clipper.admin import ClipperConnection
from clipper.admin.clipper_images import NOOP_PREDICT_MODULE
from tests.admin.conftest import running_cluster
from tests.conftest import require_or_skip
from tests.dashboard.conftest import Load

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 40
POLLS = "return Number(document.body.dataset.polls || 0)"  # cluster views the page has drawn

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _artifact(name: str) -> Path:
    directory = Path(os.environ.get("CLIPPER_ARTIFACTS_DIR", "/tmp/clipper-artifacts"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile, no network of its own, and its console log kept."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    require_or_skip(
        f"{', '.join(missing)} not installed" if missing else None,
        "CLIPPER_TEST_REQUIRE_BROWSER",
        "Debian: apt install chromium chromium-driver",
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1440,1250", f"--user-data-dir={tmp_path / 'chromium-profile'}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def loaded_cluster(tmp_path: Path, load: Callable[..., Load]) -> Iterator[ClipperConnection]:
    """A local cluster with tokens on, app `shop` -> model `ranker:1` (one replica), queried all along."""
    with running_cluster(tmp_path / "state") as conn:
        conn.register_application("shop", "doubles", "-1", 1_000_000)
        conn.deploy_model("ranker", "1", "doubles", NOOP_PREDICT_MODULE)
        conn.link_model_to_app("shop", "ranker")
        token = conn.cm.get_query_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        load([f"http://{conn.cm.get_query_addr()}/shop/predict"], headers)
        yield conn


def _until(driver: WebDriver, condition: Callable[[WebDriver], object], what: str) -> None:
    """Wait for `condition`; on timeout fail naming `what`, with the page's text and console log."""
    try:
        WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(condition)
    except TimeoutException:
        driver.save_screenshot(str(_artifact("dashboard-failure.png")))
        body = driver.find_element(By.TAG_NAME, "body").text[:3000]
        pytest.fail(f"timed out waiting for {what}; page:\n{body}\nconsole: {_browser_log(driver)}")


def _text(driver: WebDriver, css: str) -> str:
    """An element's text read in one script call (the page rebuilds its tables every poll)."""
    return str(driver.execute_script("return document.querySelector(arguments[0])?.textContent ?? ''", css))


def _number(driver: WebDriver, css: str) -> float:
    text = _text(driver, css)
    try:
        return float(text)
    except ValueError:
        return 0.0


def test_dashboard_under_load_scales_a_model_from_the_page(
    browser: WebDriver, loaded_cluster: ClipperConnection
):
    manager = loaded_cluster.cm
    browser.get(f"http://{manager.get_admin_addr()}/dashboard")

    # The cluster has an admin token: the page asks for it before calling the API.
    token = manager.get_admin_token()
    assert token, "a local cluster starts with an admin token"
    _until(
        browser, lambda d: d.find_element(By.ID, "login").get_attribute("open") is not None, "the token form"
    )
    browser.find_element(By.ID, "login-token").send_keys(token)
    browser.find_element(By.ID, "login-submit").click()

    model_row = '[data-model="ranker:1"]'
    _until(
        browser, lambda d: _number(d, '[data-app="shop"] [data-field="requests_per_s"]') > 0, "app rate > 0"
    )
    _until(
        browser, lambda d: _number(d, f"{model_row} [data-field='predictions_per_s']") > 0, "model rate > 0"
    )
    assert _text(browser, f"{model_row} [data-field='replicas']") == "1"
    _until(
        browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "canvas[data-chart]")) == 8, "8 live charts"
    )
    _until(browser, lambda d: d.execute_script(POLLS) >= 10, "a few seconds of chart history")
    shot = _artifact("dashboard.png")
    browser.save_screenshot(str(shot))
    print(f"dashboard screenshot: {shot}")

    browser.find_element(By.CSS_SELECTOR, f"{model_row} a").click()
    replicas = "#replicas tbody tr"
    _until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, replicas)) == 1, "one replica listed")
    scale = browser.find_element(By.ID, "scale-input")
    scale.clear()
    scale.send_keys("2")
    browser.find_element(By.ID, "scale-button").click()
    _until(browser, lambda d: _text(d, "#action-status") not in ("", "Working…"), "the scale call's answer")
    assert "Successfully" in _text(browser, "#action-status"), _text(browser, "#action-status")
    _until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, replicas)) == 2, "two replicas listed")
    _until(
        browser, lambda d: _text(d, f"{model_row} [data-field='replicas']") == "2", "2 replicas in the view"
    )
    assert loaded_cluster.get_num_replicas("ranker", "1") == 2
    _until(browser, lambda d: _text(d, "#logs").startswith("["), "log lines prefixed with the replica")
    model_shot = _artifact("dashboard-model.png")
    browser.save_screenshot(str(model_shot))
    print(f"model page screenshot: {model_shot}")

    errors = [e for e in _browser_log(browser) if e["level"] == "SEVERE"]
    assert errors == [], errors

    # A refused action shows the API's own message (Chromium logs the 400 itself, so this comes last).
    scale.clear()
    scale.send_keys("-1")
    browser.find_element(By.ID, "scale-button").click()
    _until(browser, lambda d: "num_replicas" in _text(d, "#action-status"), "the API's error text")


def _browser_log(driver: WebDriver) -> list[dict[str, str]]:
    try:
        return list(driver.get_log("browser"))
    except WebDriverException as e:  # a driver without the log endpoint: the test cannot check
        pytest.fail(f"chromedriver gave no console log: {e}")
