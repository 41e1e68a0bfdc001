"""The HTML page driven in headless Chromium against a real server: the three panels work."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from .conftest import DINOS
from .test_api import NAMES_FILE
from .test_service_process import Server

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = Server(tmp_path_factory.mktemp("browser") / "store")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = browser.new_page()
        tab.set_default_timeout(60_000)
        tab.goto(server.url + "/")
        yield tab
        browser.close()
    server.stop()


def test_generate_names(page: Any) -> None:
    page.get_by_test_id("names-count").fill("5")
    page.get_by_test_id("names-generate").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=names-list] li').length === 5")
    names = page.get_by_test_id("names-list").locator("li").all_inner_texts()
    assert len(set(names)) == 5 and all(n[:1].isupper() for n in names)


def test_bad_request_shows_the_api_detail(page: Any) -> None:
    page.get_by_test_id("names-count").fill("0")
    page.get_by_test_id("names-generate").click()
    error = page.get_by_test_id("error")
    error.wait_for(state="visible")
    assert "count" in error.inner_text()
    page.get_by_test_id("names-count").fill("3")
    page.get_by_test_id("names-generate").click()
    error.wait_for(state="hidden")


def test_complete_a_poem(page: Any) -> None:
    page.get_by_test_id("poem-prompt").fill("Shall I compare thee ")
    page.get_by_test_id("poem-generate").click()
    page.wait_for_function("document.querySelector('[data-testid=poem-output]').textContent.length > 100")
    assert page.get_by_test_id("poem-output").inner_text().startswith("Shall I compare thee")


def test_train_on_an_uploaded_list_then_generate(page: Any, tmp_path: Path) -> None:
    upload = tmp_path / "heroines.txt"
    upload.write_text(NAMES_FILE)
    page.get_by_test_id("train-file").set_input_files(str(upload))
    page.get_by_test_id("train-name").fill("heroines")
    page.get_by_test_id("train-submit").click()
    page.wait_for_function("document.querySelector('[data-testid=job-status]').textContent.startsWith('succeeded')",
                           timeout=120_000)
    drawn = page.evaluate("""() => {
        const c = document.querySelector('[data-testid=loss-chart]');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return data.some((v, i) => i % 4 === 3 && v > 0);
    }""")
    assert drawn
    page.wait_for_function("[...document.querySelectorAll('[data-testid=names-model] option')]"
                           ".some(o => o.value === 'heroines')")
    assert page.get_by_test_id("names-model").input_value() == "heroines"
    page.get_by_test_id("names-count").fill("4")
    page.get_by_test_id("names-generate").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=names-list] li').length === 4")


def test_api_docs_render_with_the_network_cut_off(page: Any) -> None:
    """/docs draws every operation while any request leaving this server is aborted."""
    tab = page.context.browser.new_page()
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.url))
    outside: list[str] = []

    def only_this_server(route: Any) -> None:
        if route.request.url.startswith(origin):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    tab.route("**/*", only_this_server)
    tab.goto(origin + "/docs")
    tab.wait_for_selector(".opblock-summary-path[data-path='/info']")
    assert outside == []
    tab.close()


def test_screenshot_for_the_readme(page: Any, tmp_path: Path) -> None:
    """The README's picture of the page, taken after the tests above filled it in.
    `make screenshot` writes it to docs/page.png; otherwise it goes to a temporary directory."""
    page.get_by_test_id("names-model").select_option("dinos")
    page.get_by_test_id("names-count").fill("8")
    page.get_by_test_id("names-generate").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=names-list] li').length === 8")
    page.set_viewport_size({"width": 1200, "height": 700})
    target = Path(os.environ.get("DINO_SCREENSHOT") or tmp_path / "page.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_running_job_shows_how_long_it_will_take(page: Any, tmp_path: Path) -> None:
    upload = tmp_path / "dinos.txt"
    upload.write_text(DINOS.read_text())  # 40 epochs of the default network: a minute or more
    page.get_by_test_id("train-file").set_input_files(str(upload))
    page.get_by_test_id("train-name").fill("dinoseta")
    page.get_by_test_id("train-case").select_option("fold")
    page.get_by_test_id("train-submit").click()
    page.wait_for_function("/(expected to take|left)/.test(document.querySelector('[data-testid=job-eta]')"
                           ".textContent)", timeout=60_000)
    assert re.search(r"about \d+ (h|min|s)", page.get_by_test_id("job-eta").inner_text())
    base = page.url.rstrip("/")
    running = [j for j in httpx.get(base + "/jobs").json() if j["model"] == "dinoseta"]
    assert running and httpx.post(f"{base}/jobs/{running[0]['id']}/cancel", timeout=30).status_code == 200


def test_constraints_more_beam_and_score(page: Any, tmp_path: Path) -> None:
    items = "[...document.querySelectorAll('[data-testid=names-list] li')]"
    page.get_by_test_id("names-model").select_option("dinos")
    page.get_by_test_id("names-count").fill("5")
    page.get_by_test_id("names-suffix").fill("raptor")
    page.get_by_test_id("names-exclude").fill("z")
    page.get_by_test_id("names-seed").fill("11")
    page.get_by_test_id("names-generate").click()
    page.wait_for_function(f"{items}.length === 5 && {items}.every(li => /raptor/.test(li.textContent))")
    first = page.get_by_test_id("names-list").locator("li").all_inner_texts()
    assert all("z" not in n.split(" (")[0].lower() for n in first)
    page.get_by_test_id("names-more").click()  # page 2 of seed 11: five other names
    page.wait_for_function(f"{items}.length === 5 && !{items}.some(li => {first!r}.includes(li.textContent))")
    page.get_by_test_id("names-suffix").fill("")
    page.get_by_test_id("names-exclude").fill("")
    page.get_by_test_id("names-mode").select_option("beam")
    page.get_by_test_id("names-generate").click()
    page.wait_for_function(f"{items}.length === 5 && {items}.every(li => /log-probability/.test(li.textContent))")
    assert page.get_by_test_id("names-more").is_disabled()
    page.get_by_test_id("names-mode").select_option("sample")
    page.get_by_test_id("score-input").fill("Tyrannosaurus\nXqzzq")
    page.get_by_test_id("score-submit").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=score-output] li').length === 2")
    lines = page.get_by_test_id("score-output").locator("li").all_inner_texts()
    assert lines[0].startswith("Tyrannosaurus: more typical than") and "validation names" in lines[0]
    assert "than 0% of" in lines[1]
    page.screenshot(path=str(tmp_path / "engine-controls.png"), full_page=True)
