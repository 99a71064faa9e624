"""The HTML report opened in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) loads the report of a real run, every image loads,
and the browser's console has no errors. Run directly, it also refreshes the screenshot
in the docs: ``python tests/analysis/test_report_browser.py docs/img/report.png``."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import require_tool

from engramloop.controller.config import SHIPPED_DIR

ROOT = Path(__file__).resolve().parents[2]
CFG = SHIPPED_DIR / "sim-so.toml"


def make_report(folder: Path) -> Path:
    from engramloop.cli import main

    rec = folder / "run.xdf"
    assert main(["run", str(CFG), "--duration", "60", "--speed", "max", "--quiet",
                 "--record", str(rec), "--report", str(folder / "report")]) == 0
    return folder / "report" / "index.html"


def open_in_chromium(index: Path, screenshot: Path | None = None) -> dict:
    """Load ``index`` in headless Chromium; returns what the page and console showed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = require_tool("chromium", package="chromium")
    driver_path = require_tool("chromedriver", package="chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,900"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.set_page_load_timeout(60)
        driver.get(index.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => "
            "[i.getAttribute('src'), i.complete && i.naturalWidth > 0]);")
        title = driver.title
        height = driver.execute_script("return document.body.scrollHeight;")
        console = driver.get_log("browser")
        if screenshot is not None:
            driver.set_window_size(1200, min(int(height), 2400))
            driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    return {"images": images, "title": title, "console": console, "height": height}


def test_report_renders_in_chromium_with_every_image_and_no_console_error(tmp_path):
    index = make_report(tmp_path)
    shot = tmp_path / "report.png"
    page = open_in_chromium(index, shot)
    assert page["title"] and page["height"] > 1000
    assert len(page["images"]) >= 4, page["images"]
    broken = [src for src, ok in page["images"] if not ok]
    assert not broken, f"images that did not load: {broken}"
    errors = [m for m in page["console"] if m.get("level") == "SEVERE"]
    assert not errors, errors
    assert shot.stat().st_size > 10_000


if __name__ == "__main__":  # refresh the docs' screenshot
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "img" / "report.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            print(open_in_chromium(make_report(Path(d)), out)["images"])
        except pytest.skip.Exception as exc:
            sys.exit(str(exc))
        print(f"wrote {out}")
