"""The playground in headless Chromium (Debian's chromium + Playwright, no browser download):
type a prompt and watch text stream in, generate an image grid, classify a text; with an API key."""
import os
import shutil

import httpx
import pytest

from .conftest import KEY

CHROMIUM = os.environ.get("GENFORGE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page():
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def test_playground_text_images_and_classify(server, page):
    page.goto(server.url + "/")
    page.wait_for_selector("#status:has-text('API key')")  # the page asks for the key first
    page.fill("#api-key", KEY)
    page.click("#reload")
    page.wait_for_selector("body[data-ready='1']")
    assert page.eval_on_selector_all("#text-model option", "os => os.map(o => o.value)") == ["tiny"]

    # text: typed prompt, greedy, streamed chunk by chunk into the output box
    page.fill("#prompt", "First Citizen")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "30")
    page.click("#generate")
    page.wait_for_selector("#output[data-done='1']")
    shown = page.text_content("#output")
    api = httpx.post(server.url + "/v1/completions", headers=server.auth(),
                     json={"model": "tiny", "prompt": "First Citizen", "max_tokens": 30, "temperature": 0}).json()
    assert shown == api["choices"][0]["text"] and len(shown) > 0
    # the first token leaves alone, the rest as they come (a loaded machine coalesces them into fewer chunks)
    assert int(page.get_attribute("#output", "data-chunks")) >= 2, "the text did not arrive as a stream"

    # images: a class-conditional model, class 3, 4 images in the grid
    page.select_option("#image-model", "digits")
    page.fill("#image-n", "4")
    page.fill("#image-seed", "1")
    page.select_option("#image-label", "3")
    page.click("#image-generate")
    page.wait_for_function("document.querySelectorAll('#image-grid img').length === 4 && "
                           "[...document.querySelectorAll('#image-grid img')].every(i => i.naturalWidth === 8)")

    # classify: the label and one probability row per class
    page.fill("#classify-text", "good good good")
    page.click("#classify")
    page.wait_for_selector("#classify-result .label")
    assert page.text_content("#classify-result .label") == "pos"
    probs = page.eval_on_selector_all(".prob", "rows => rows.map(r => [r.dataset.label, +r.dataset.p])")
    assert [label for label, _ in probs] == ["pos", "neg"] and abs(sum(p for _, p in probs) - 1) < 1e-6
    assert page.text_content("#status") == ""


def test_playground_image_panel_takes_a_prompt_and_guidance_for_text_to_image(server, page):
    page.goto(server.url + "/")
    page.fill("#api-key", KEY)
    page.click("#reload")
    page.wait_for_selector("body[data-ready='1']")
    page.select_option("#image-model", "t2i")
    assert page.is_visible("#prompt-box") and page.is_visible("#guidance-box") and not page.is_visible("#label-box")
    fake = server.state.models["t2i"].pipeline
    page.fill("#image-prompt", "")
    page.click("#image-generate")
    page.wait_for_selector("#status:has-text('prompt: a text-to-image model needs a prompt')")
    page.fill("#image-prompt", "a red circle")
    page.fill("#image-n", "3")
    page.fill("#image-seed", "4")
    page.fill("#image-guidance", "2.5")
    page.click("#image-generate")
    page.wait_for_function("document.querySelectorAll('#image-grid img').length === 3")
    assert fake.calls[-1] == (3, 4, "a red circle") and fake.last_guidance == 2.5
    assert page.text_content("#status") == ""
    page.select_option("#image-model", "digits")  # a GAN: a class, no prompt nor guidance
    assert not page.is_visible("#prompt-box") and not page.is_visible("#guidance-box") and page.is_visible("#label-box")
