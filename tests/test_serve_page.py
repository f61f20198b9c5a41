"""The page at ``/`` in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by selenium, against the app served by uvicorn on loopback.

Outside CI the test skips when no browser is installed; in CI (``CI`` set) it fails instead,
since ``.ci/run`` installs one. It saves the screenshot that docs/serve.md shows.
"""

import copy
import io
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from PIL import Image
from serve_helpers import REPOSITORY, catalogue_of, demo_root, fit_index, fit_model, free_port

from fusionrec.serve import ServeSettings, create_app

SCREENSHOT = REPOSITORY / "docs" / "serve_page.jpg"
WINDOW = (1200, 900)


def browser_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    message = "needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: it {message}; .ci/run installs them")
    pytest.skip(message)


@pytest.fixture(scope="module")
def catalogue(demo):
    return catalogue_of(demo)


@pytest.fixture(scope="module")
def index(catalogue, tmp_path_factory):
    photos, ids, _, _ = catalogue
    memory = tmp_path_factory.mktemp("features")
    return fit_index(photos, ids, memory), fit_model(photos, ids, memory)


@pytest.fixture(scope="module")
def server(index, demo):
    """The app, served by uvicorn in a thread of this process, on a free loopback port."""
    fitted_index, model = index
    app = create_app(
        copy.deepcopy(fitted_index),
        model=model,
        settings=ServeSettings(photo_folder=demo_root(demo)),
    )
    port = free_port()
    served = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    while not served.started:
        if not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    served.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = browser_paths()
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    yield driver
    driver.quit()


def page_state(driver) -> str:
    return driver.find_element("tag name", "body").get_attribute("data-state") or ""


def wait_for(driver, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def open_page(driver, url):
    driver.get(url)
    wait_for(driver, lambda d: page_state(d) == "ready")


def choose(driver, photo: Path) -> None:
    driver.find_element("id", "file-input").send_keys(str(photo))
    wait_for(driver, lambda d: page_state(d) in ("done", "failed"))


def test_a_photo_finds_its_product_first_with_matches_drawn(browser, server, index, catalogue):
    fitted_index, _ = index
    _, _, queries, products = catalogue
    shown = products.index("Tropicana-Apple-Juice")  # packaged: many keypoint matches to draw
    photo, product = Path(queries[shown]), products[shown]
    [expected] = copy.deepcopy(fitted_index).query([str(photo)], k=8)
    open_page(browser, server)
    assert "catalogue photos" in browser.find_element("id", "status").text
    choose(browser, photo)
    assert page_state(browser) == "done", browser.find_element("id", "error").text
    hits = browser.find_elements("css selector", "#results .hit")
    assert [hit.get_attribute("data-id") for hit in hits] == expected.ids.tolist()
    assert hits[0].get_attribute("data-id").split("/")[0] == product
    assert browser.find_element("id", "product-label").text == product
    assert "Decision score" in browser.find_element("id", "shares").text
    wait_for(
        browser, lambda d: d.find_element("tag name", "body").get_dom_attribute("data-explained")
    )
    assert browser.find_element("id", "explanation").is_displayed()
    assert browser.execute_script("return document.getElementById('explanation').naturalWidth") > 0
    thumbnails_shown = browser.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.naturalWidth > 0)"
    )
    assert thumbnails_shown
    wait_for(browser, lambda d: d.find_element("id", "matches").is_displayed())
    drawn = browser.find_element("id", "match-id").text
    verified = next(hit for hit in hits if "has-matches" in hit.get_attribute("class"))
    assert drawn.startswith(verified.get_attribute("data-id"))
    colours = browser.execute_script(
        "const c = document.getElementById('match-canvas');"
        "const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "const seen = new Set();"
        "for (let i = 0; i < pixels.length; i += 4 * 97) seen.add(pixels.slice(i, i + 3).join());"
        "return seen.size;"
    )
    assert colours > 100  # two photos and the match lines, not a blank canvas
    height, chrome = browser.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
    )
    browser.set_window_size(WINDOW[0], height + chrome)
    screenshot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    screenshot.save(SCREENSHOT, quality=85)  # JPEG: a third of the PNG's size
    browser.set_window_size(*WINDOW)
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_file_that_is_not_a_photo_shows_the_servers_reason(browser, server, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo at all")
    open_page(browser, server)
    choose(browser, text)
    assert page_state(browser) == "failed"
    assert "not a readable image" in browser.find_element("id", "error").text
