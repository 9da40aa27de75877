"""The documentation site, built with `mkdocs build --strict` and loaded in headless Chromium.

The home page, the clients guide and the API reference render, the search box finds a
page, and the browser console stays free of errors (no page reaches out to the network:
no web fonts, no repository widget).
"""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make install` installs it)
CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    for program in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(program), f"{program} is missing: run `make install`"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser: webdriver.Chrome, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, 30).until(
        lambda driver: driver.execute_script("return document.readyState") == "complete"
    )


def console_errors(browser: webdriver.Chrome) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def heading(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, "article h1").text)


def test_home_page_renders_with_the_navigation(browser: webdriver.Chrome, site_url: str) -> None:
    open_page(browser, site_url + "/")
    assert heading(browser) == "pymedplum documentation"
    nav = browser.find_element(By.CSS_SELECTOR, "nav.md-nav--primary").get_attribute("textContent")
    for title in ("Clients", "Typed search", "API reference"):
        assert title in str(nav)
    assert console_errors(browser) == []


def test_client_page_renders(browser: webdriver.Chrome, site_url: str) -> None:
    open_page(browser, site_url + "/client/")
    assert heading(browser) == "The clients"
    assert "on_behalf_of" in browser.find_element(By.CSS_SELECTOR, "article").text
    assert console_errors(browser) == []


def test_api_reference_renders_the_clients_from_their_docstrings(
    browser: webdriver.Chrome, site_url: str
) -> None:
    open_page(browser, site_url + "/api/clients/")
    article = browser.find_element(By.CSS_SELECTOR, "article").text
    assert "MedplumClient" in article and "AsyncMedplumClient" in article
    # Docstrings of methods, including those the clients inherit from their mixins.
    assert "search_resources" in article and "Search one page of a resource type" in article
    assert console_errors(browser) == []


def test_api_reference_renders_a_model(browser: webdriver.Chrome, site_url: str) -> None:
    open_page(browser, site_url + "/api/fhir/")
    article = browser.find_element(By.CSS_SELECTOR, "article").text
    assert "Patient" in article and "birth_date" in article
    assert console_errors(browser) == []


def test_search_finds_a_page(browser: webdriver.Chrome, site_url: str) -> None:
    open_page(browser, site_url + "/")
    browser.find_element(By.CSS_SELECTOR, "label.md-search__icon, label[for='__search']").click()
    box = WebDriverWait(browser, 30).until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "input.md-search__input"))
    )
    box.send_keys("ProjectMembership")
    results = WebDriverWait(browser, 30).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "li.md-search-result__item")
    )
    assert results
    assert any("behalf" in str(r.get_attribute("textContent")).lower() for r in results)
    assert console_errors(browser) == []
