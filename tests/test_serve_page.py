"""Issue 15, the web page at `/`, in a real browser: Debian's headless Chromium (driven by Selenium against
that executable, nothing downloaded) opens a running `minwa serve`, uploads a real photograph, and shows it
with the top-5 classes as bars — the names and order `minwa predict` gives, the first one called the top
class — and the latency; at phone width nothing overflows. A screenshot is kept beside the test's files.
`make test` installs Chromium as root (scripts/ensure-chromium.sh); elsewhere this test skips."""

from __future__ import annotations

import shutil
import signal

import pytest

from data_fixtures import jpeg_bytes, photo
from minwa.evaluate import predict
from serve_fixtures import start_server, tiny_checkpoint

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not "
                                "installed (apt-get install chromium chromium-driver; make test does it as root)")
CLASSES = ["astronaut", "coffee", "chelsea", "rocket", "hubble", "retina", "camera"]


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install 'minwa[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=390,844"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_the_page_shows_the_photo_and_the_top5_as_bars(browser, tmp_path):
    """Also: a file that is not an image is answered in the page with the server's one sentence."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ckpt = tiny_checkpoint(tmp_path / "tiny", CLASSES)
    image = tmp_path / "chelsea.jpg"
    image.write_bytes(jpeg_bytes(photo("chelsea")))
    text = tmp_path / "notes.txt"
    text.write_text("not a photograph")
    want = predict([ckpt], [image], topk=5)[0]["top"]
    proc, url = start_server(ckpt)
    try:
        browser.get(url + "/")
        WebDriverWait(browser, 20).until(lambda d: "classes" in d.find_element(By.ID, "models").text)
        browser.find_element(By.ID, "file").send_keys(str(text))
        WebDriverWait(browser, 30).until(lambda d: "error" in (d.find_element(By.ID, "status").get_attribute("class") or ""))
        assert browser.find_element(By.ID, "status").text == "cannot decode the uploaded image: not an image"
        assert not browser.find_elements(By.CSS_SELECTOR, "#bars .row")
        browser.find_element(By.ID, "file").send_keys(str(image))
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "status").get_attribute("data-top"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#bars .row")
        assert [r.get_attribute("data-class") for r in rows] == [t["class"] for t in want]
        for row, t in zip(rows, want):
            assert float(row.get_attribute("data-probability")) == pytest.approx(t["probability"], abs=1e-6)
            assert row.find_element(By.CLASS_NAME, "name").text == t["class"]
            assert row.find_element(By.CLASS_NAME, "pct").text == f"{100 * t['probability']:.1f}%"
        track = rows[0].find_element(By.CLASS_NAME, "track").size["width"]
        fill = rows[0].find_element(By.CLASS_NAME, "fill").size["width"]
        assert fill == pytest.approx(track * want[0]["probability"], abs=2)  # the bar is the probability
        status = browser.find_element(By.ID, "status").text
        assert f"top class: {want[0]['class']}" in status and " ms" in status
        photo_el = browser.find_element(By.ID, "photo")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", photo_el) == 451
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")  # phone width
        shot = tmp_path / "serve-page.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
