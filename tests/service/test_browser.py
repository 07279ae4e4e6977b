"""The web page, end to end in headless Chromium (Debian's package) driven by Playwright.

The test installs Chromium with apt-get when it is missing and it can (root, Debian); it skips
only where it cannot and CMHASH_REQUIRE_BROWSER is unset. CI sets that variable, so there it
fails rather than skips.
"""
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from cmhash.search import open_for_search
from cmhash.service import create_app

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
            if shutil.which("chromium"):
                return shutil.which("chromium")
    return None


@pytest.fixture(scope="module")
def browser_path():
    path = _chromium()
    if path is None:
        msg = "no Chromium (install Debian's `chromium`)"
        if os.environ.get("CMHASH_REQUIRE_BROWSER"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def chromium(browser_path):
    """Headless Chromium (Debian's, through Playwright) for the module's tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tiny_demo):
    import uvicorn

    out, _ = tiny_demo
    store, enc = open_for_search(out / "index", None, "cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(store, enc), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", out
    srv.should_exit = True
    t.join(10)
    store.close()


@pytest.mark.browser
def test_web_page_searches_by_text_and_image(server, chromium, tmp_path):
    url, out = server
    page = chromium.new_page()
    page.goto(url + "/")
    page.wait_for_function("document.getElementById('about').textContent.includes('200 items')")
    # a text query: a grid of k results with thumbnails, captions and distances
    page.fill("#q", "dog puppy pet")
    page.select_option("#k", "10")
    page.click("#search-btn")
    page.wait_for_selector(".result")
    cards = page.locator(".result")
    assert cards.count() == 10
    dists = [int(t.split("=")[1]) for t in page.locator(".result .dist").all_inner_texts()]
    assert dists == sorted(dists)
    page.wait_for_function("document.querySelector('.result img').naturalWidth > 0")
    assert page.locator(".result .caption").first.inner_text().strip()
    assert "text \u2192 image" in page.inner_text("#status")
    page.screenshot(path=str(tmp_path / "text-search.png"), full_page=True)
    # an image upload: a same-modal search finds the image itself (16-bit codes collide, so
    # among the codes at distance 0 or 1)
    page.check("#same")
    page.set_input_files("#image", str(out / "codes" / "images" / "42.png"))
    page.wait_for_function("document.getElementById('status').textContent.includes('image \u2192 image')")
    # its own code is in the index: the nearest results are at distance 0 (or 1, after the
    # PNG round trip); with 16-bit codes more than 10 items may share it, so 42 itself may not
    # be among the 10 shown
    first = int(page.locator(".result .dist").first.inner_text().split("=")[1])
    assert first <= 1
    assert page.locator('.result[data-id="42"]').count() == 1 or first == 0
    # a bad query: the API's message is shown as an error, the grid is emptied
    page.fill("#q", "☃ ☂")
    page.click("#search-btn")
    page.wait_for_selector("#status.error")
    assert "text encoder" in page.inner_text("#status")
    assert page.locator(".result").count() == 0


@pytest.mark.browser
def test_the_search_is_in_the_url_and_results_lead_on(server, chromium, tmp_path):
    """A search puts its query, direction and k in the URL: a reload, a shared link and Back give
    the same search. "more like this" searches from a result's stored code, no upload. The empty
    page offers example queries from the collection's own words; each result names its file."""
    url, out = server
    page = chromium.new_page()
    page.goto(url + "/")
    page.wait_for_selector("#examples button")
    examples = page.locator("#examples button").all_inner_texts()
    assert 1 <= len(examples) <= 6 and all(len(w) > 2 for w in examples), examples
    page.locator("#examples button").first.click()
    page.wait_for_selector(".result")
    assert f"q={examples[0]}" in page.url and page.input_value("#q") == examples[0]
    assert not page.locator("#examples").is_visible()  # on the empty page only
    page.fill("#q", "dog puppy")
    page.select_option("#k", "10")
    page.click("#search-btn")
    page.wait_for_function("location.search.includes('dog+puppy')")
    page.wait_for_function("document.querySelectorAll('.result').length === 10")
    first = page.locator(".result").first.get_attribute("data-id")
    assert "k=10" in page.url
    assert page.locator(".result .file").first.inner_text().endswith(".png")  # its file, not "#17"
    shared = page.url
    page.reload()  # the same search again, from the URL alone
    page.wait_for_function("document.querySelectorAll('.result').length === 10")
    assert page.input_value("#q") == "dog puppy"
    assert page.locator(".result").first.get_attribute("data-id") == first
    # more like this: the first result's stored image code -> images
    page.locator(".result .like").first.click()
    page.wait_for_function("location.search.includes('like=')")
    page.wait_for_function("document.getElementById('status').textContent.includes('image \\u2192 image')")
    assert f"like={first}" in page.url
    assert page.locator(".result .dist").first.inner_text().strip() == "d = 0"  # itself, or its code's twins
    page.go_back()
    page.wait_for_function("location.search.includes('dog+puppy')")
    page.wait_for_function("document.getElementById('status').textContent.includes('text \\u2192 image')")
    other = chromium.new_page()  # a shared link opens on the same results
    other.goto(shared)
    other.wait_for_function("document.querySelectorAll('.result').length === 10")
    assert other.locator(".result").first.get_attribute("data-id") == first
    page.screenshot(path=str(tmp_path / "url-state.png"), full_page=True)
