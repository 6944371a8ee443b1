"""Headless Chromium through Selenium: the one way the benches and the tests start a browser.

    with browser.chromium() as driver:
        driver.get(page.as_uri())

Each browser gets a profile folder of its own, removed after it quits, so that browsers started at once
never share one; it holds the browser's temporary files too (TMPDIR), so a killed browser leaves none
in /tmp. A browser that dies before it has shown a blank page (once in CI the renderer died on the first
`driver.get`: "Unable to receive message from renderer") is a start-up failure, not a page's: one fresh
browser is started, once. A page that crashes a working browser is never retried.
The page tests share one browser for their session, a clean slate each (tests/conftest.py's SharedChromium).
chromedriver and every Chromium process are killed with the process that started them, also where that
one is killed (SIGKILL, the OOM killer, a CI timeout) and cleans up nothing: bench/lifeline.py.
Needs the OS's chromium and chromedriver (apt-get install chromium chromium-driver) and selenium.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bench.lifeline import Lifeline

INSTALL = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
WINDOW = (1280, 900)  # the window's width and height, in CSS pixels, at start-up
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)
BLANK = "data:text/html,<body data-ready=1>"  # a page that cannot fail: only a broken browser fails to show it


def installed() -> bool:
    return bool((shutil.which("chromium") or shutil.which("chromium-browser")) and shutil.which("chromedriver"))


def started(profile: str):
    """A Selenium driver of a fresh headless Chromium whose profile is the folder `profile`. chromedriver and
    the browser it starts are in the group of the driver's `lifeline` (a bench.lifeline.Lifeline), which
    `quit_or_kill` ends, and this process's end, however it comes."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not installed():
        raise RuntimeError(INSTALL)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for get_log
    lifeline = Lifeline()
    # TMPDIR: where Chromium keeps its singleton socket (org.chromium.Chromium.*) and chromedriver its
    # scoped_dir.*, removed by a browser that quits but not by one killed: in the profile, they go with it.
    service = Service(shutil.which("chromedriver"), env={**os.environ, "TMPDIR": profile}, popen_kw=lifeline.joining())
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except BaseException:
        lifeline.end()  # what started of chromedriver and the browser
        raise
    driver.lifeline = lifeline
    return driver


def shows_a_blank_page(driver) -> bool:
    from selenium.common.exceptions import WebDriverException

    try:
        driver.get(BLANK)
        return driver.execute_script("return document.body.dataset.ready") == "1"
    except WebDriverException:
        return False


@contextmanager
def chromium() -> Iterator:
    """A working headless Chromium (see the module's docstring), quit or killed and its profile removed
    at the end. Raises RuntimeError where two fresh browsers in a row fail to show a blank page."""
    for attempt in (1, 2):
        profile = tempfile.mkdtemp(prefix="charlm-chromium-")
        try:
            driver = started(profile)
        except BaseException:
            shutil.rmtree(profile, ignore_errors=True)
            raise
        try:
            if shows_a_blank_page(driver):
                yield driver
                return
        finally:
            quit_or_kill(driver)
            shutil.rmtree(profile, ignore_errors=True)
    raise RuntimeError(f"headless Chromium died at start-up {attempt} times in a row: not a page's fault")


def quit_or_kill(driver, timeout: float = 30) -> None:
    """`driver.quit()`, then whatever is left of chromedriver and the browser killed (its lifeline ended):
    at once where quit() has not returned in `timeout` s: with a browser that stopped answering, quit()
    waits on chromedriver 120 s a try, three tries."""
    quitting = threading.Thread(target=driver.quit, daemon=True)
    quitting.start()
    quitting.join(timeout)
    driver.lifeline.end()
    quitting.join(timeout)
