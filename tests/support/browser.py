"""A real headless Chromium (Debian's chromium, driven through chromium-driver by Selenium) for the
console's tests, and the screenshots they leave under .data/screenshots/."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".data" / "screenshots"
DESKTOP = (1280, 900)
PHONE = (390, 844)
T = TypeVar("T")
# The machines' network is closed: without these, Chromium keeps trying to reach Google's hosts.
_QUIET = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)


@contextlib.contextmanager
def chromium(size: tuple[int, int] = DESKTOP) -> Iterator[WebDriver]:
    """A fresh headless Chromium with an empty profile, closed after the block."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError("chromium and chromedriver are missing: scripts/ensure-tools.sh installs them")
    with tempfile.TemporaryDirectory(prefix="videogen-chromium-") as profile:
        options = Options()
        options.binary_location = browser
        for argument in (*_QUIET, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"):
            options.add_argument(argument)
        session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        try:
            session.set_window_size(*size)
            yield session
        finally:
            session.quit()


def wait_for(session: WebDriver, condition: Callable[[WebDriver], T], timeout: float = 30, what: str = "") -> T:
    """What condition returns once it is truthy; a TimeoutException naming what otherwise."""
    found: T = WebDriverWait(session, timeout, poll_frequency=0.1).until(condition, message=what)
    return found


def screenshot(session: WebDriver, name: str) -> Path:
    """Saves the page as .data/screenshots/<name>.png (the whole page's height) and says where."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    width = session.get_window_size()["width"]
    height = int(session.execute_script("return document.documentElement.scrollHeight"))
    session.set_window_size(width, max(height, 400))
    session.save_screenshot(str(path))
    return path
