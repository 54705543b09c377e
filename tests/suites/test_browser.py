"""End to end in headless Chromium (Debian's package, driven by Playwright): the web app
and the report, with screenshots saved to test-artifacts/."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import convscope
from convscope.render.report import build_report, list_sections
from tests.live import ARTIFACTS, CHROMIUM_ARGS, chromium_or_skip, start_server

pytestmark = pytest.mark.browser



def wait_images(pg, selector: str, timeout: float = 60) -> int:
    """Wait until every image matching ``selector`` is decoded; return how many.

    (Polled from Python: Playwright's wait_for_function evaluates a string in the page,
    which the app's Content-Security-Policy rightly forbids.)"""
    import time

    pg.wait_for_selector(selector)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = pg.locator(selector).evaluate_all(
            "xs => xs.map(i => i.complete && i.naturalWidth > 0)")
        if states and all(states):
            return len(states)
        pg.wait_for_timeout(100)
    raise AssertionError(f"images {selector} did not load: {states}")


@pytest.fixture(scope="module")
def browser():
    executable = chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(mnist_model):
    s = start_server(mnist_model)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def report_file(mnist_model, tmp_path_factory):
    """The report of the demo's model (the convnet on mnist5k), smaller samples."""
    r = build_report(mnist_model, progress=False, n=500, explain_images=3,
                     faithfulness_images=8, class_images=10, class_steps=30, wrong=12)
    return r.save(tmp_path_factory.mktemp("report") / "report.html")


@pytest.fixture
def page(browser):
    """A page whose console errors, page errors and failed requests are collected."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    pg.problems = []
    pg.on("console", lambda m: m.type == "error" and pg.problems.append(f"console: {m.text}"))
    pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
    pg.on("requestfailed", lambda r: pg.problems.append(f"request failed: {r.url}"))
    yield pg
    context.close()


def shot(pg, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


@pytest.fixture(scope="module")
def digit_file(tmp_path_factory):
    """A real MNIST digit (a test image of mnist5k) as a PNG file."""
    ds = convscope.load_dataset("mnist5k")
    path = tmp_path_factory.mktemp("upload") / "digit.png"
    Image.fromarray(ds.test_images[612, 0].numpy()).save(path)
    return path


def test_the_app_loads_with_no_console_error(page, server):
    page.goto(server.url)
    page.wait_for_load_state("networkidle")
    assert page.title().startswith("convscope:")
    assert page.is_visible("#drop")
    assert page.problems == []


def test_upload_shows_the_top5_and_every_overlay(page, server, digit_file, mnist_model):
    page.goto(server.url)
    page.set_input_files("#file", str(digit_file))
    page.wait_for_selector("#upload-result #top5")
    wait_images(page, "#upload-result img.overlay")
    rows = page.locator("#upload-result #top5 tbody tr")
    assert rows.count() == 5
    clf = convscope.load(mnist_model)
    best = clf.topk(str(digit_file), k=1)[0][0]
    assert rows.nth(0).locator("td").nth(1).inner_text() == best[0]
    overlays = page.locator("#upload-result img.overlay")
    assert overlays.count() == len(convscope.list_methods())
    # a rendered overlay has colour: the heatmaps are drawn in jet over a grey digit
    png = overlays.nth(3).screenshot()
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert ((rgb.max(-1) - rgb.min(-1)) > 60).mean() > 0.2
    shot(page, "app-upload.png")
    assert page.problems == []


def test_browsing_a_test_image(page, server):
    page.goto(server.url)
    page.click("#tabs button[data-view=browse]")
    wait_images(page, "#thumbs img")
    page.locator("#thumbs img").nth(4).click()
    page.wait_for_selector("#test-result #top5")
    wait_images(page, "#test-result img")
    assert "Test image #4" in page.inner_text("#test-status")
    shot(page, "app-browse.png")
    assert page.problems == []


def test_layers_show_filters_and_activations(page, server):
    from playwright.sync_api import expect

    page.goto(server.url)
    page.click("#tabs button[data-view=layers]")
    wait_images(page, "#filters img")
    wait_images(page, "#acts img")
    expect(page.locator("#filters-text")).to_contain_text("conv1_1: 32 filters")
    page.select_option("#layer-select", "relu2_1")
    expect(page.locator("#acts-text")).to_contain_text("relu2_1: 64 maps of 14x14")
    expect(page.locator("#filters-text")).to_contain_text("has no filters to draw")
    page.select_option("#layer-select", "conv2_1")
    page.fill("#act-index", "12")
    page.dispatch_event("#act-index", "change")
    expect(page.locator("#acts-text")).to_contain_text("conv2_1: 64 maps")
    wait_images(page, "#filters img")
    wait_images(page, "#acts img")
    shot(page, "app-layers.png")
    # (the ReLU's missing filters came back as a 400 the page reported, which Chromium also
    # logs as a failed resource; nothing else may be in the console)
    assert [p for p in page.problems if "status of 400" not in p] == []


def test_tsne_hover_shows_the_image_and_a_click_opens_it(page, server):
    from playwright.sync_api import expect

    page.goto(server.url)
    page.click("#tabs button[data-view=tsne]")
    page.wait_for_selector("#tsne-svg circle", timeout=180_000)
    assert page.locator("#tsne-svg circle").count() == 1000
    point = page.locator("#tsne-svg circle").last  # drawn last: on top of any neighbour
    index, label = point.get_attribute("data-index"), point.get_attribute("data-label")
    point.hover()
    wait_images(page, "#tsne-tip img")
    assert page.is_visible("#tsne-tip")
    assert page.inner_text("#tsne-tip").strip() == f"#{index} {label}"
    shot(page, "app-tsne.png")
    point.click()
    expect(page.locator("#test-status")).to_have_text(f"Test image #{index}, labelled {label}",
                                                      timeout=60_000)
    assert page.is_visible("#view-browse")
    assert page.problems == []


def test_a_bad_upload_shows_the_servers_sentence(page, server, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is text, not a picture\n")
    page.goto(server.url)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#upload-status.error")
    assert "not a readable image" in page.inner_text("#upload-status")


def alts(pg, selector: str) -> list[str]:
    return pg.locator(selector).evaluate_all("xs => xs.map(i => i.alt)")


def test_the_photo_tab_shows_everything_found_with_the_description_as_alt(page, server):
    """Issue: upload a photo and see the faces, objects, pose, mask and description
    together; the description is the alt of every image shown."""
    from playwright.sync_api import expect

    from convscope.samples import sample_path

    page.goto(server.url)
    page.click("#tabs button[data-view=photo]")
    assert page.is_visible("#photo-drop") and page.inner_text("#photo-status") == ""
    page.set_input_files("#photo-file", str(sample_path("astronaut")))
    expect(page.locator("#photo-text")).to_contain_text("1 person", timeout=120_000)
    text = page.inner_text("#photo-text")
    assert text.startswith("Image may contain: ") and "person" in text
    assert wait_images(page, "#photo-result img") == 5
    assert alts(page, "#photo-picture") == [text]
    assert alts(page, "#photo-parts img") == [f"{name}: {text}" for name in
                                              ("faces", "objects", "pose", "mask")]
    concepts = page.locator("#photo-concepts tbody tr")
    assert concepts.count() >= 1
    first = [c.inner_text() for c in concepts.nth(0).locator("td").all()]
    assert first[0] == "1 person" and "mtcnn" in first[1] and float(first[2]) > 0.5
    captions = page.inner_text("#photo-parts")
    assert "1 face (mtcnn" in captions and "keypoints" in captions and "covers" in captions
    assert "astronaut.png (looked at 512x512 px)" in page.inner_text("#photo-status")
    shot(page, "app-photo.png")
    assert page.problems == []


def test_the_uploaded_images_alt_is_its_description(page, server):
    """The "Your image" view: the classifier's answer first, then the description as the
    alt of the image and of each overlay."""
    from playwright.sync_api import expect

    from convscope.samples import sample_path

    page.goto(server.url)
    page.set_input_files("#file", str(sample_path("astronaut")))
    page.wait_for_selector("#upload-result #top5")
    expect(page.locator("#upload-alt")).to_contain_text("1 person", timeout=120_000)
    text = page.inner_text("#upload-alt")
    assert alts(page, "#upload-result img.input") == [text]
    assert alts(page, "#upload-result img.overlay") == [
        f"{m}: {text}" for m in convscope.list_methods()]
    shot(page, "app-upload-photo.png")
    assert page.problems == []


def test_the_report_opens_offline_with_every_section_and_no_broken_image(browser, report_file):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
    requests = []
    context.route("**/*", lambda route: (requests.append(route.request.url),
                                         route.continue_() if route.request.url.startswith(
                                             "file:") else route.abort()))
    pg = context.new_page()
    problems = []
    pg.on("console", lambda m: m.type == "error" and problems.append(m.text))
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.goto(report_file.as_uri())
    pg.wait_for_load_state("load")
    shown = pg.eval_on_selector_all("section[data-section]", "s => s.map(x => x.dataset.section)")
    assert shown == list_sections(task="classify")  # a classifier's page: its sections
    for name in shown:
        section = pg.locator(f"#sec-{name}")
        assert section.is_visible()
        assert "Not available" not in section.inner_text(), name
        assert section.locator("p.how").inner_text().strip()
    images = pg.eval_on_selector_all(
        "img", "xs => xs.map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(images) > 20
    broken = [alt for alt, complete, width in images if not complete or width == 0]
    assert broken == []
    assert [u for u in requests if not u.startswith("file:")] == []  # nothing but the file
    assert problems == []
    shot(pg, "report.png")
    shot(pg, "report-top.png", full_page=False)
    pg.locator("#sec-explanations").scroll_into_view_if_needed()
    shot(pg, "report-explanations.png", full_page=False)
    context.close()
