"""The chat page, end to end in headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium; nothing downloads a browser) against a real `discmed serve --model tiny`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are needed (scripts/test-setup.sh installs them)")
    profile = tempfile.mkdtemp(prefix="discmed-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}"]:  # fmt: skip
        options.add_argument(flag)
    # A phone's screen (headless windows cannot be narrower than 500 px; emulation can).
    options.add_experimental_option(
        "mobileEmulation", {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0}}
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def send(driver, text: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    before = len(driver.find_elements(By.CSS_SELECTOR, ".msg.assistant"))
    box = driver.find_element(By.ID, "input")
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant, .msg.error")) > before)
    reply = driver.find_elements(By.CSS_SELECTOR, ".msg")[-1]
    wait.until(lambda d: reply.get_attribute("data-state") in ("done", "error"))
    return reply


def test_chat_page(browser, tiny_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = tiny_server.removesuffix("/v1") + "/"
    browser.get(page)
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "model").text == "tiny")
    notice = browser.find_element(By.ID, "notice")
    assert notice.is_displayed() and "不是医生" in notice.text and "120" in notice.text

    # Count how often the reply's text changes while it streams in.
    browser.execute_script(
        "window.updates = 0; new MutationObserver(() => window.updates++)"
        ".observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});"
    )
    browser.find_element(By.CSS_SELECTOR, "#settings summary").click()
    browser.find_element(By.ID, "max-tokens").clear()
    browser.find_element(By.ID, "max-tokens").send_keys("64")
    reply = send(browser, "胸口压榨样疼痛，出冷汗")
    assert reply.get_attribute("data-state") == "done", reply.text
    banner = reply.find_element(By.CSS_SELECTOR, ".urgent")
    assert banner.text.startswith("【紧急】") and "120" in banner.text
    assert "AI 生成" in reply.find_element(By.CSS_SELECTOR, ".note").text
    assert browser.execute_script("return window.updates") >= 4  # the reply arrived piece by piece

    second = send(browser, "我想减肥，每天跑步多久合适")
    assert second.get_attribute("data-state") == "done" and not second.find_elements(
        By.CSS_SELECTOR, ".urgent"
    )
    # The page keeps the conversation: both turns went to the model with the second question.
    assert browser.execute_script("return history.map(m => m.role)") == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".msg")) == 4

    # Readable on a phone: nothing wider than the screen, text not tiny, send button reachable.
    width = browser.execute_script("return window.innerWidth")
    assert width <= 400
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    assert (
        float(browser.execute_script("return getComputedStyle(document.body).fontSize").removesuffix("px"))
        >= 14
    )
    assert browser.find_element(By.ID, "send").is_displayed()
    shot = Path(tempfile.gettempdir()) / "discmed-chat-page.png"
    browser.save_screenshot(str(shot))

    browser.find_element(By.ID, "clear").click()
    assert browser.find_elements(By.CSS_SELECTOR, ".msg") == []
    assert browser.execute_script("return history.length") == 0
    again = send(browser, "头痛两天了")  # a fresh conversation works after clearing
    assert again.get_attribute("data-state") == "done"
    assert browser.execute_script("return history.length") == 2
