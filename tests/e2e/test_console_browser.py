"""The local console (the stack's root URL) in headless Chromium, driven by Playwright.

Debian's ``chromium`` is the browser (Playwright's own builds are not downloadable
here, so ``playwright install`` is never run). Messages are sent with the
``threadline`` CLI while the page is open; they must appear without a reload. A
screenshot is kept under ``artifacts/`` (git-ignored) for a human to look at.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.test_cli_e2e import run

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
LAUNCH_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "artifacts"
WAIT_MS = 20_000
INSTRUCTIONS = (
    "the console's browser test needs Debian's chromium at /usr/bin/chromium: "
    "run `sudo apt-get install -y chromium` (never `playwright install`)"
)


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and this user may."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.fail(INSTRUCTIONS)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=900, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"{INSTRUCTIONS}\n{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(INSTRUCTIONS)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=LAUNCH_FLAGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, local_stack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # The stack was started with THREADLINE_API_TOKEN; the page takes it from the
    # URL's fragment (never sent to the server) and forgets the fragment.
    opened.goto(f"{local_stack.base_url}/#token={local_stack.api_token}")
    opened.wait_for_selector("#live.on", timeout=WAIT_MS)
    yield opened
    context.close()
    assert errors == []


def test_messages_sent_by_the_cli_appear_without_a_reload(local_stack, page):
    number = f"+1555131{secrets.randbelow(10**4):04d}"
    assert "token" not in page.url  # the fragment is gone from the address bar
    page.evaluate("window.sameDocument = true")  # gone if the page reloaded

    assert run(local_stack, "send", "sms", "--from", number, "Where is my order?").exit_code == 0
    customer = page.locator(".customer", has_text=f"phone:{number}")
    customer.wait_for(timeout=WAIT_MS)
    customer.click()
    page.locator(".msg.inbound", has_text="Where is my order?").wait_for(timeout=WAIT_MS)

    # A second channel from the same number: the open timeline updates by itself.
    assert run(local_stack, "send", "whatsapp", "--from", number, "On WhatsApp").exit_code == 0
    whatsapp = page.locator(".msg.inbound[data-channel=whatsapp]", has_text="On WhatsApp")
    whatsapp.wait_for(timeout=WAIT_MS)
    assert whatsapp.locator(".icon.ch-whatsapp").count() == 1
    assert page.locator(".boundary").count() == 1  # one conversation

    # The reply box answers through the API; the outbox shows what the provider got.
    answer = f"It ships today ({secrets.token_hex(3)})."
    page.fill("#reply-text", answer)
    page.click("#reply button")
    reply = page.locator(".msg.outbound", has_text=answer)
    reply.wait_for(timeout=WAIT_MS)
    page.locator(".msg.outbound .history", has_text="sent").wait_for(timeout=WAIT_MS)
    page.locator("#outbox .entry", has_text=answer).wait_for(timeout=WAIT_MS)
    page.locator("#events .entry[data-event-type='message.sent']").first.wait_for(timeout=WAIT_MS)

    assert page.evaluate("window.sameDocument") is True
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-browser.png"), full_page=True)


def test_message_text_is_shown_as_text_never_run(local_stack, page):
    number = f"+1555131{secrets.randbelow(10**4):04d}"
    hostile = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    assert run(local_stack, "send", "sms", "--from", number, hostile).exit_code == 0

    page.fill("#identity", f"phone:{number}")
    page.click("#search button")
    shown = page.locator(".msg.inbound .text")
    shown.wait_for(timeout=WAIT_MS)

    assert shown.text_content() == hostile
    assert page.locator(".msg img, .msg b").count() == 0
    assert page.evaluate("window.pwned") is None


def test_an_unknown_identity_says_so(local_stack, page):
    page.fill("#identity", "phone:+15551319999")
    page.click("#search button")
    page.locator("#error", has_text="no customer has phone:+15551319999").wait_for(timeout=WAIT_MS)
