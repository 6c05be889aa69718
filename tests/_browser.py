"""Headless Chromium for the browser tests: Debian's ``chromium`` and ``chromium-driver``, driven by Selenium.

The test command installs both (``./run test``). Chromium is started with what a closed
network needs (no background networking, component updates or sync, which would try
Google's hosts at every start) and a fresh profile per browser, so that two browsers
are two reviewers with their own cookies.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = os.environ.get("DETWATCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DETWATCH_CHROMEDRIVER", "/usr/bin/chromedriver")


@contextmanager
def browser(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium (a Selenium ``WebDriver``) with its own profile; quit afterwards."""
    from selenium import webdriver

    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        raise RuntimeError(f"{CHROMIUM} and {CHROMEDRIVER} are needed: ./run test installs Debian's chromium")
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no usage statistics over the network
    profile = tempfile.mkdtemp(prefix="detwatch-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
