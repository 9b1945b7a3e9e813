"""The interactive page end to end: `python -m migm_jax.app` started on a free local port, driven in headless
Chromium (Debian's chromium + chromium-driver through selenium; skipped with the reason where they are missing
or do not start). A prompt and tiny settings (N=4, B=2, one image) draw a vanilla and a shortcut image of the
demo's size with their times; a second click only samples (the compiled samplers are kept); an unknown word and
B > N are one-line messages on the page, and the server goes on."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from migm_jax.assets import DEMO_EMOJI
from migm_jax.weights import read_config
from processes import ROOT, free_port

try:
    import gradio  # noqa: F401  the server's
    import transformers  # noqa: F401  the demo's tokenizer
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    MISSING = None
except ImportError as e:
    MISSING = f"{e} (pip install -e '.[app,text,test]')"
# .ci/run installs the browser (and `make test` the extras) and sets this: there a skip would hide a failure
REQUIRED = os.environ.get("MIGM_BROWSER_TEST") == "required"


def unavailable(reason: str) -> None:
    """Skips the test for `reason`, or fails it where the browser test is REQUIRED."""
    if REQUIRED:
        pytest.fail(f"{reason} (MIGM_BROWSER_TEST=required)", pytrace=False)
    pytest.skip(reason)


TAB = "emoji"  # the element-id prefix of the embedded text-to-image demo's tab (its weights directory's name)
LOCAL = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, process) of `python -m migm_jax.app` on a free port (JAX on CPU); killed and reaped at the end."""
    logs = tmp_path_factory.mktemp("app")
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_TEMP_DIR=str(logs / "files"), **LOCAL)
    with open(logs / "out.txt", "w") as out, open(logs / "err.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "migm_jax.app", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 180
        while "the page is at" not in (logs / "out.txt").read_text():
            assert proc.poll() is None, f"the server stopped: {(logs / 'err.txt').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the server did not start within 180 s"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/", proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium under its chromedriver; `unavailable` (with the reason) where they are not there
    or do not start."""
    if MISSING:
        unavailable(MISSING)
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        unavailable("no chromium / chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1800",
                "--no-proxy-server"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=webdriver.ChromeService(driver_path), options=options)
    except WebDriverException as e:
        unavailable(f"headless Chromium did not start: {str(e.msg or e).strip().splitlines()[0]}")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(browser, server):
    url, _ = server
    browser.get(url)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, f"{TAB}-generate"))
    return browser


def fill(driver, field: str, value) -> None:
    """Types `value` into the page's field `field` (replacing what is there), as a user does."""
    box = driver.find_element(By.CSS_SELECTOR, f"#{TAB}-{field} input, #{TAB}-{field} textarea")
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value))
    box.send_keys(Keys.TAB)


def text(driver, element: str) -> str:
    return driver.find_element(By.ID, f"{TAB}-{element}").text


def generate(driver, until, timeout: float = 300) -> None:
    """Clicks Generate and waits until `until(driver)` holds."""
    driver.find_element(By.ID, f"{TAB}-generate").click()
    WebDriverWait(driver, timeout, poll_frequency=0.2).until(until)


def shown_image(driver, element: str) -> np.ndarray:
    """The (H, W, 3) pixels the page shows in `element` (as the browser loaded them: its natural size)."""
    img = driver.find_element(By.CSS_SELECTOR, f"#{TAB}-{element} img")
    size = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(img.get_attribute("src"), timeout=30) as response:
        pixels = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
    assert list(pixels.shape[1::-1]) == size
    return pixels


def test_prompt_draws_vanilla_and_shortcut_side_by_side_with_times(page, tmp_path):
    sampling = read_config(DEMO_EMOJI)[1]["sampling"]
    fill(page, "condition", sampling["prompts"][1])
    fill(page, "steps", 4)
    fill(page, "budget", 2)
    done = lambda d: "sampling" in text(d, "vanilla-time") and "sampling" in text(d, "fast-time")
    generate(page, done)
    for element in ("vanilla", "fast"):
        pixels = shown_image(page, element)
        assert pixels.shape == (sampling["height"], sampling["width"], 3)
        assert pixels.std() > 10, f"the {element} image is blank"
    strip = shown_image(page, "fast-strip")
    assert strip.shape[1] > 4 * sampling["width"]  # four frames, one per step
    vanilla, fast = text(page, "vanilla-time"), text(page, "fast-time")
    assert re.search(r"vanilla N=4: 4 of 4 steps on the base model, sampling \d+\.\d{3} s \(compiling first", vanilla)
    assert re.search(r"shortcut N=4 B=2: 2 of 4 steps on the base model, sampling \d+\.\d{3} s \(compiling first", fast)
    assert "speed-up" in text(page, "status")
    page.save_screenshot(str(tmp_path / "app_page.png"))
    generate(page, lambda d: "kept compiled sampler" in text(d, "fast-time"), timeout=120)  # samples only
    assert "kept compiled sampler" in text(page, "vanilla-time")


@pytest.mark.parametrize("field,value,message", [
    ("condition", "twemoji dogg face", "the word 'dogg' is not in the model's vocabulary"),
    ("budget", 6, "budget B (base-model steps of the N = 4) must be a whole number in 2..4, got 6"),
])
def test_bad_input_is_a_message_on_the_page_and_the_server_goes_on(page, server, field, value, message):
    fill(page, "condition", read_config(DEMO_EMOJI)[1]["sampling"]["prompts"][1])
    fill(page, "steps", 4)
    fill(page, "budget", 2)
    fill(page, field, value)
    generate(page, lambda d: "Error:" in text(d, "status"), timeout=120)
    status = " ".join(text(page, "status").split())  # the rendered markdown breaks lines around `code`
    assert message in status and "Traceback" not in status and len(status) < 300
    assert not page.find_elements(By.CSS_SELECTOR, f"#{TAB}-fast img")  # no stale image under the message
    assert server[1].poll() is None
