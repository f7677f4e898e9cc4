"""Unit-test isolation for process-wide caches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from threadline.settings import webhook_settings


@pytest.fixture(autouse=True)
def fresh_webhook_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The handlers cache their settings for the life of a Lambda environment, and the
    # integration fixtures load handlers with a function's whole environment: a
    # PUBLIC_BASE_URL left behind (in os.environ or in the cache) would make unit tests
    # check Twilio signatures against the wrong URL. A test that needs one sets it.
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    webhook_settings.cache_clear()
    yield
    webhook_settings.cache_clear()
