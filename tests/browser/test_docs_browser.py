"""``/docs`` in real headless Chromium: Swagger UI renders every route of /openapi.json.

Served by a real server with the app's strict Content-Security-Policy; the page must
load no resource from another origin and trigger no CSP violation. A screenshot lands in
``test-artifacts/``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser

from tests.browser.test_oauth_browser import ARTIFACTS, browser  # noqa: F401 (fixture)
from tests.support import Server

pytestmark = pytest.mark.server


def test_docs_page_renders_and_lists_every_route(
    start_server: Any,
    browser: Browser,  # noqa: F811
) -> None:
    server: Server = start_server()
    document = httpx.get(f"{server.url}/openapi.json").json()
    expected = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    context = browser.new_context()
    page = context.new_page()
    origins: set[str] = set()
    console_errors: list[str] = []
    failed: list[str] = []
    page.on("request", lambda request: origins.add(urlsplit(request.url).netloc))
    page.on(
        "response",
        lambda answer: failed.append(answer.url) if answer.status >= 400 else None,
    )
    page.on(
        "console",
        lambda message: console_errors.append(message.text) if message.type == "error" else None,
    )
    try:
        response = page.goto(f"{server.url}/docs")
        assert response is not None and response.status == 200
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        page.wait_for_selector(".opblock", timeout=20_000)
        assert page.locator(".info .title").inner_text().startswith("AuthGate")
        blocks = page.locator(".opblock-summary")
        shown = set()
        for index in range(blocks.count()):
            block = blocks.nth(index)
            method = block.locator(".opblock-summary-method").inner_text().strip()
            path = block.locator(".opblock-summary-path").get_attribute("data-path")
            shown.add((method, path))
        assert shown == expected
        assert len(shown) >= 27
        # The OAuth flows and scopes are offered by the Authorize dialog.
        page.locator("button.authorize").first.click()
        dialog = page.locator(".auth-container")
        dialog.first.wait_for(timeout=10_000)
        text = page.locator(".modal-ux").inner_text()
        for scheme in ("basic", "bearer", "oauth2", "resource:read", "authorizationCode"):
            assert scheme in text
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=False)
    finally:
        context.close()
    assert origins == {urlsplit(server.url).netloc}
    assert not [error for error in console_errors if "Content Security Policy" in error]
    assert failed == []
    assert console_errors == []
