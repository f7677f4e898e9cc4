"""The web chat widget in a real browser (headless Chromium) on the local stack's demo page.

A screenshot is kept under ``artifacts/`` (git-ignored) for a human to look at.
"""

from __future__ import annotations

import time

import pytest
import requests

# Debian's chromium through Playwright, installed with apt-get when missing: the
# console's browser test has the fixture.
from tests.e2e.test_console_browser import ARTIFACTS, browser  # noqa: F401 (fixture)
from tests.e2e.test_webchat_e2e import api, customer_id_of, demo_url

pytestmark = pytest.mark.e2e

XSS = "<img src=x onerror=alert(1)>"


def message_texts(page) -> list[str]:
    return page.locator("#threadline-chat-log li .tl-text").all_text_contents()


def wait_for_text(page, text: str, timeout_ms: float) -> None:
    page.wait_for_function(
        """text => [...document.querySelectorAll('#threadline-chat-log li .tl-text')]
                     .some(node => node.textContent === text)""",
        arg=text,
        timeout=timeout_ms,
    )


def visitor_id(page, stack) -> str:
    saved = page.evaluate(f"localStorage.getItem('threadline-chat:{stack.base_url}')")
    assert saved, "the widget keeps its session in localStorage"
    import json

    return json.loads(saved)["visitor_id"]


def test_a_live_conversation_in_the_browser(local_stack, browser):  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(demo_url(local_stack))

    box = page.get_by_label("Your message")
    box.wait_for(timeout=15_000)
    box.fill("Do you ship to Lisbon?")
    box.press("Enter")
    # Acknowledged: the pending bubble got the stored message's id.
    page.wait_for_selector(
        "#threadline-chat-log li.tl-mine:not(.tl-pending)[data-message-id]", timeout=15_000
    )

    customer_id = customer_id_of(local_stack, visitor_id(page, local_stack))
    timeline = api(local_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()
    assert [m["parts"][0]["text"] for m in timeline["items"]] == ["Do you ship to Lisbon?"]

    def reply(text: str) -> float:
        answer = api(
            local_stack, "POST", f"/v1/customers/{customer_id}/messages", json={"text": text}
        )
        assert answer.status_code == 202, answer.text
        return time.monotonic()

    # The first reply warms the publisher and dispatcher up (their cold starts are
    # the local stack's, not the widget's); the next must show within 2 seconds.
    reply("Hi! Let me check.")
    wait_for_text(page, "Hi! Let me check.", 30_000)
    posted = reply("Yes, within 2 days.")
    wait_for_text(page, "Yes, within 2 days.", 2_000)
    assert time.monotonic() - posted < 2.5

    box.fill(XSS)
    box.press("Enter")
    wait_for_text(page, XSS, 10_000)
    assert page.locator("#threadline-chat-log img").count() == 0
    assert dialogs == []

    # Shown is read: the widget reported it.
    for _ in range(50):
        items = api(local_stack, "GET", f"/v1/customers/{customer_id}/timeline").json()["items"]
        agent = [m for m in items if m["direction"] == "outbound"]
        if all(m["status"] == "read" for m in agent):
            break
        time.sleep(0.1)
    assert [m["status"] for m in agent] == ["read", "read"]

    page.reload()
    wait_for_text(page, "Yes, within 2 days.", 15_000)
    assert message_texts(page) == [
        "Do you ship to Lisbon?",
        "Hi! Let me check.",
        "Yes, within 2 days.",
        XSS,
    ]
    assert page.locator("#threadline-chat-log img").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webchat-browser.png"), full_page=True)
    context.close()


def test_the_widget_is_keyboard_operable_and_labelled(local_stack, browser):  # noqa: F811
    page = browser.new_page()
    page.goto(demo_url(local_stack))
    box = page.get_by_label("Your message")
    box.wait_for(timeout=15_000)
    page.keyboard.press("Escape")  # closes the panel, focus back on the launcher
    launcher = page.get_by_role("button", name="Example Shop support")
    assert launcher.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.activeElement.className") == "tl-launch"
    page.keyboard.press("Enter")  # opens it again, focus in the message box
    assert box.is_visible()
    assert page.get_by_role("log", name="Conversation").count() == 1
    assert page.evaluate("document.activeElement.id") == "threadline-chat-input"
    widget = requests.get(local_stack.base_url + "/webchat/v1/widget.js", timeout=15)
    assert len(widget.content) < 20 * 1024
    page.close()
