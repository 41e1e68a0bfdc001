"""The HTML page driven in headless Chromium (Debian's, never a downloaded one) against a real server with an
access token: every panel, streaming, errors, training options, the chart, cancel and reload.

Each test saves a screenshot in a temporary directory (printed with -s); `make screenshot` writes the
README's picture to docs/page.png.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

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
TOKEN = "page-test-token"
ITEMS = "[...document.querySelectorAll('[data-testid=names-list] li')]"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("browser") / "store", env={"DINO_ADMIN_TOKEN": TOKEN})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots of the page: {folder}")
    return folder


@pytest.fixture(scope="module")
def page(server: Server) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = browser.new_page(viewport={"width": 1200, "height": 900})
        tab.set_default_timeout(60_000)
        tab.goto(server.url + "/")
        yield tab
        browser.close()


def snap(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def as_verse(text: str) -> str:
    """What the page should show for a poem: each line's first letter and the word "i" in capitals."""
    lines = [re.sub(r"^([^A-Za-z]*)([a-z])", lambda m: m[1] + m[2].upper(), line) for line in text.split("\n")]
    return re.sub(r"\bi\b", "I", "\n".join(lines))


def test_generate_names(page: Any, shots: Path) -> None:
    page.get_by_test_id("names-count").fill("5")
    page.get_by_test_id("names-generate").click()
    page.wait_for_function(f"{ITEMS}.length === 5")
    names = page.get_by_test_id("names-list").locator("li").all_inner_texts()
    assert len(set(names)) == 5 and all(n[:1].isupper() for n in names)
    snap(page, shots, "names")


def test_names_in_the_training_list_are_marked(page: Any, shots: Path) -> None:
    training = {line.strip().lower() for line in DINOS.read_text().splitlines() if line.strip()}
    page.get_by_test_id("names-count").fill("40")
    page.get_by_test_id("names-seed").fill("3")
    page.get_by_test_id("names-temperature").fill("0.6")  # a cool temperature repeats training names often
    page.get_by_test_id("names-generate").click()
    page.wait_for_function(f"{ITEMS}.length === 40")
    rows = page.evaluate(f"{ITEMS}.map(li => [li.firstChild.textContent, !!li.querySelector('.known')])")
    marked = {name: known for name, known in rows}
    assert marked == {name: name.lower() in training for name in marked}
    assert any(marked.values()) and not all(marked.values())  # both kinds are on show
    snap(page, shots, "known-names")
    page.get_by_test_id("names-seed").fill("")
    page.get_by_test_id("names-temperature").fill("1")


def test_errors_are_in_plain_words_next_to_the_control(page: Any, shots: Path, tmp_path: Path) -> None:
    error = page.get_by_test_id("error")
    next_to = "(id) => document.querySelector(`[data-testid=${id}]`).nextElementSibling.dataset.testid"
    page.get_by_test_id("names-count").fill("0")
    page.get_by_test_id("names-generate").click()
    error.wait_for(state="visible")
    assert error.inner_text() == "How many: must be at least 1"
    assert page.evaluate(next_to, "names-count") == "error"
    assert page.get_by_test_id("names-count").get_attribute("aria-invalid") == "true"
    snap(page, shots, "error-count")
    page.get_by_test_id("names-count").fill("3")
    page.get_by_test_id("names-generate").click()
    error.wait_for(state="hidden")
    assert page.get_by_test_id("names-count").get_attribute("aria-invalid") is None
    page.wait_for_function(f"{ITEMS}.length === 3")

    page.get_by_test_id("names-prefix").fill("x\u2603")  # a character no dinosaur name has
    page.get_by_test_id("names-generate").click()
    error.wait_for(state="visible")
    assert page.evaluate(next_to, "names-prefix") == "error" and "\u2603" in error.inner_text()
    assert page.evaluate(f"{ITEMS}.length") == 0  # the names of the earlier form are gone with it
    page.get_by_test_id("names-prefix").fill("")

    page.get_by_test_id("names-temperature").fill("0.0001")  # greedy: one name only, and the service says why
    page.get_by_test_id("names-generate").click()
    page.wait_for_function(f"({next_to})('names-generate') === 'error'")
    assert error.inner_text().startswith("greedy sampling") and "; ask for count 1" in error.inner_text()
    page.get_by_test_id("names-temperature").fill("1")

    upload = tmp_path / "names.txt"
    upload.write_text(NAMES_FILE)
    page.get_by_test_id("train-file").set_input_files(str(upload))
    page.get_by_test_id("train-token").fill(TOKEN)
    page.get_by_test_id("train-name").fill("My Towns!")
    page.get_by_test_id("train-submit").click()
    page.wait_for_function(f"({next_to})('train-name') === 'error'")
    text = error.inner_text()
    assert text.startswith("Model name: may use only lower-case letters a-z, digits, _ and -")
    assert "pattern" not in text and "[a-z" not in text
    snap(page, shots, "error-train-name")


def test_poem_streams_and_reads_as_verse(page: Any, server: Server, shots: Path) -> None:
    """The page shows /poem/stream's pieces as they come; with the request's seed fixed (by the test),
    the text equals /poem's for the same query, with capitals at line starts and for "I"."""
    asked: list[str] = []

    def with_seed(route: Any) -> None:
        url = route.request.url + "&seed=5"
        asked.append(url)
        route.continue_(url=url)

    page.route("**/poem/stream?*", with_seed)
    page.evaluate("""() => { window.poemUpdates = 0;
        new MutationObserver(() => window.poemUpdates++).observe(
            document.querySelector('[data-testid=poem-output]'), {childList: true, characterData: true}); }""")
    page.get_by_test_id("poem-prompt").fill("shall i compare thee ")
    page.get_by_test_id("poem-lines").fill("6")
    page.get_by_test_id("poem-temperature").fill("0.9")
    page.get_by_test_id("poem-generate").click()
    page.wait_for_selector("[data-testid=poem-output][data-done=true]")
    page.unroute("**/poem/stream?*")
    query = dict(parse_qsl(urlsplit(asked[0]).query, keep_blank_values=True))
    assert query == {"prompt": "shall i compare thee ", "lines": "6", "temperature": "0.9", "seed": "5"}
    raw = httpx.get(f"{server.url}/poem?{urlencode(query)}", timeout=60).json()["poem"]
    assert raw.count("\n") >= 5 and re.search(r"(^|\n)[^A-Za-z\n]*[a-z]", raw)  # the model writes lower case
    shown = page.evaluate("document.querySelector('[data-testid=poem-output]').textContent")
    assert shown == as_verse(raw) and shown.startswith("Shall I compare thee ")
    assert page.evaluate("window.poemUpdates") > 2  # the text grew piece by piece
    snap(page, shots, "poem")


def test_poem_errors_come_next_to_their_field(page: Any) -> None:
    page.get_by_test_id("poem-lines").fill("0")
    page.get_by_test_id("poem-generate").click()
    page.get_by_test_id("error").wait_for(state="visible")
    assert page.get_by_test_id("error").inner_text() == "Lines: must be at least 1"
    page.get_by_test_id("poem-lines").fill("4")


def test_constraints_more_beam_and_score(page: Any, shots: Path) -> None:
    page.get_by_test_id("names-model").select_option("dinos")
    page.get_by_test_id("names-count").fill("5")
    page.get_by_test_id("names-prefix").fill("a")
    page.get_by_test_id("names-suffix").fill("raptor")
    page.get_by_test_id("names-exclude").fill("z")
    page.get_by_test_id("names-seed").fill("11")
    page.get_by_test_id("names-generate").click()
    page.wait_for_function(f"{ITEMS}.length === 5 && {ITEMS}.every(li => /^A.*raptor/.test(li.textContent))")
    first = page.get_by_test_id("names-list").locator("li").all_inner_texts()
    assert all("z" not in n.lower() for n in first)
    page.get_by_test_id("names-more").click()  # page 2 of seed 11: five other names
    page.wait_for_function(f"{ITEMS}.length === 5 && !{ITEMS}.some(li => {first!r}.includes(li.innerText))")
    for hook in ("names-prefix", "names-suffix", "names-exclude"):
        page.get_by_test_id(hook).fill("")
    page.get_by_test_id("names-mode").select_option("beam")
    page.get_by_test_id("names-generate").click()
    page.wait_for_function(f"{ITEMS}.length === 5 && {ITEMS}.every(li => /log-probability/.test(li.textContent))")
    assert page.get_by_test_id("names-more").is_disabled()
    page.get_by_test_id("names-mode").select_option("sample")
    page.get_by_test_id("names-seed").fill("")  # no seed: "More" still continues the draw on screen
    page.get_by_test_id("names-count").fill("50")
    page.get_by_test_id("names-temperature").fill("0.3")  # a narrow draw: unrelated pages would overlap
    page.get_by_test_id("names-generate").click()
    page.wait_for_function(f"{ITEMS}.length === 50 && !{ITEMS}.some(li => /log-probability/.test(li.textContent))")
    first = page.get_by_test_id("names-list").locator("li").all_inner_texts()
    page.get_by_test_id("names-count").fill("10")  # the form changed since: "More" continues the list on screen
    page.get_by_test_id("names-seed").fill("5")
    page.get_by_test_id("names-more").click()
    page.wait_for_function(f"{ITEMS}.length === 50 && !{ITEMS}.some(li => li.innerText === {first[0]!r})")
    assert not set(page.get_by_test_id("names-list").locator("li").all_inner_texts()) & set(first)
    page.get_by_test_id("names-temperature").fill("1")
    page.get_by_test_id("score-input").fill("Tyrannosaurus\nXqzzq")
    page.get_by_test_id("score-submit").click()
    page.wait_for_function("document.querySelectorAll('[data-testid=score-output] li').length === 2")
    lines = page.get_by_test_id("score-output").locator("li").all_inner_texts()
    assert lines[0].startswith("Tyrannosaurus: more typical than") and "validation names" in lines[0]
    assert "than 0% of" in lines[1]
    snap(page, shots, "engine-controls")


def _job(server: Server, job_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/jobs/{job_id}", timeout=30).json())


def test_training_with_a_token_a_budget_a_chart_and_a_reload(page: Any, server: Server, shots: Path,
                                                              tmp_path: Path) -> None:
    page.evaluate("sessionStorage.clear()")
    page.reload()
    page.get_by_test_id("train-token").wait_for(state="visible")  # /info (fetched) says this server wants a token
    upload = tmp_path / "dinos.txt"
    upload.write_text(DINOS.read_text())  # over 1,000 names: a validation set chooses the weights
    page.get_by_test_id("train-file").set_input_files(str(upload))
    page.get_by_test_id("train-name").fill("quickdinos")
    page.get_by_test_id("train-budget").fill("8")
    page.get_by_test_id("train-case").select_option("fold")
    page.get_by_test_id("train-submit").click()
    error = page.get_by_test_id("error")
    error.wait_for(state="visible")
    assert error.inner_text() == "This server asks for an access token to train or cancel: paste it here."
    assert page.evaluate("document.querySelector('[data-testid=train-token]').nextElementSibling.id") == "error"
    page.get_by_test_id("train-token").fill(TOKEN)
    page.get_by_test_id("train-submit").click()
    page.wait_for_function("() => localStorage.getItem('dino.job')")
    job_id = page.evaluate("localStorage.getItem('dino.job')")
    page.wait_for_function("/running for/.test(document.querySelector('[data-testid=job-eta]').textContent)")
    assert re.search(r"running for \d+ (min \d+ )?s", page.get_by_test_id("job-eta").inner_text())
    assert not page.get_by_test_id("job-cancel").is_disabled()

    page.reload()  # the job and the token stay with the tab
    page.wait_for_function("/^quickdinos: (running|succeeded)/.test("
                           "document.querySelector('[data-testid=job-status]').textContent)")
    assert page.get_by_test_id("train-token").input_value() == TOKEN
    page.wait_for_function("document.querySelector('[data-testid=job-status]').textContent"
                           ".startsWith('quickdinos: succeeded')", timeout=120_000)
    job = _job(server, job_id)
    assert job["options"]["time_budget"] == 8 and job["options"]["case"] == "fold"
    losses = [h["val_loss"] for h in job["history"] if h["val_loss"] is not None]
    best = min(losses)
    assert [h["best_val_loss"] for h in job["history"]] == [min(losses[: i + 1]) for i in range(len(losses))]
    model = httpx.get(f"{server.url}/models/quickdinos", timeout=30).json()
    assert abs(model["versions"][-1]["metrics"]["val_nll_per_char"] - best) < 1e-4  # the job's rounding
    epoch = next(h["epoch"] for h in job["history"] if h["val_loss"] == best)
    assert page.get_by_test_id("loss-caption").inner_text().startswith(
        f"The validation loss that chose the model: {best:.3f} nats per character, at epoch {epoch} ")
    assert re.fullmatch(r"took \d+ (min \d+ )?s", page.get_by_test_id("job-eta").inner_text())
    assert page.get_by_test_id("job-cancel").is_disabled()
    snap(page, shots, "trained")
    axes = page.evaluate("""() => {  // dark pixels left of the plot (y labels) and below it (x labels)
        const c = document.querySelector('[data-testid=loss-chart]'), ctx = c.getContext('2d');
        const inked = (x, y, w, h) => ctx.getImageData(x, y, w, h).data.some((v, i) => i % 4 === 3 && v > 0);
        return [inked(0, 30, 50, c.height - 80), inked(60, c.height - 38, c.width - 80, 36)]; }""")
    assert axes == [True, True]
    page.wait_for_function("[...document.querySelectorAll('[data-testid=names-model] option')]"
                           ".some(o => o.value === 'quickdinos')")
    rate = 100 * model["memorisation_rate"]
    assert page.get_by_test_id("names-model-info").inner_text() == (
        f"Repeats a name of its training list in {rate:.1f}% of random samples.")
    page.get_by_test_id("names-count").fill("4")
    page.get_by_test_id("names-generate").click()
    page.wait_for_function(f"{ITEMS}.length === 4")


def test_a_running_job_can_be_cancelled(page: Any, server: Server, shots: Path, tmp_path: Path) -> None:
    upload = tmp_path / "dinos.txt"
    upload.write_text(DINOS.read_text())
    page.get_by_test_id("train-file").set_input_files(str(upload))
    page.get_by_test_id("train-name").fill("longdinos")
    page.get_by_test_id("train-token").fill(TOKEN)  # not left to an earlier test's tab
    page.get_by_test_id("train-budget").fill("")
    page.get_by_test_id("train-epochs").fill("300")  # far longer than the test waits
    page.get_by_test_id("train-submit").click()
    page.wait_for_function("/(expected to take|left)/.test(document.querySelector('[data-testid=job-eta]')"
                           ".textContent)", timeout=90_000)
    assert re.search(r"about \d+ (h|min|s)", page.get_by_test_id("job-eta").inner_text())
    snap(page, shots, "running")
    page.get_by_test_id("job-cancel").click()
    page.wait_for_function("document.querySelector('[data-testid=job-status]').textContent"
                           ".startsWith('longdinos: cancelled')")
    job_id = page.evaluate("localStorage.getItem('dino.job')")
    assert _job(server, job_id)["status"] == "cancelled" and _job(server, job_id)["options"]["epochs"] == 300
    assert not page.get_by_test_id("train-submit").is_disabled()
    assert page.get_by_test_id("job-status").inner_text() == "longdinos: cancelled"
    assert page.get_by_test_id("loss-caption").inner_text().startswith("No model was stored")


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
    tab.wait_for_selector(".opblock-summary-path[data-path='/poem/stream']")
    assert outside == []
    tab.close()


def test_screenshot_for_the_readme(page: Any, server: Server, shots: Path) -> None:
    """The README's picture of the page, showing the trained job of the tests above, names and a poem.
    `make screenshot` writes it to docs/page.png; otherwise it goes to the screenshots directory."""
    trained = [j for j in httpx.get(f"{server.url}/jobs", timeout=30).json() if j["status"] == "succeeded"]
    if trained:
        page.evaluate("(id) => localStorage.setItem('dino.job', id)", trained[0]["id"])
        page.reload()
        page.wait_for_function("/succeeded/.test(document.querySelector('[data-testid=job-status]').textContent)")
    page.get_by_test_id("poem-generate").click()
    page.wait_for_selector("[data-testid=poem-output][data-done=true]")
    page.get_by_test_id("names-model").select_option("dinos")
    page.get_by_test_id("names-count").fill("8")
    page.get_by_test_id("names-generate").click()
    page.wait_for_function(f"{ITEMS}.length === 8")
    target = Path(os.environ.get("DINO_SCREENSHOT") or shots / "page.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
