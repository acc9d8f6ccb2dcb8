"""Browser fixtures: a real threaded HTTP server around the app, and Debian's headless Chromium via Playwright.

A failing test leaves a screenshot of its page in tests/artifacts/.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@dataclasses.dataclass
class LiveServer:
    url: str
    runtime: object  # the Runtime the server and the in-process worker share

    def run_searches(self) -> None:
        """Run every queued search in this (main) thread: RQ needs the main thread for its signals."""
        from searchjobs.worker.worker import run_worker

        run_worker(self.runtime, ["searches"], burst=True, logging_level="WARNING")


@pytest.fixture
def live_server(settings, runtime):
    """The app on 127.0.0.1:<free port>, PUBLIC_BASE_URL set to it (so result links and catalog images work)."""
    from werkzeug.serving import make_server

    from searchjobs.embedded import free_port
    from searchjobs.runtime import Runtime, install
    from searchjobs.web import create_app

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    live = Runtime(settings=dataclasses.replace(settings, public_base_url=url), engine=runtime.engine,
                   redis=runtime.redis)
    server = make_server("127.0.0.1", port, create_app(runtime=live), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield LiveServer(url, live)
    server.shutdown()
    server.server_close()
    install(None)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, request):
    """`new_page(**context_options)` opens a page; every page is screenshotted if the test fails."""
    contexts = []

    def open_page(**options):
        context = browser.new_context(**options)
        contexts.append(context)
        return context.new_page()

    yield open_page
    report = getattr(request.node, "report_call", None)
    failed = report is None or report.failed
    for index, context in enumerate(contexts):
        for number, page in enumerate(context.pages):
            if failed:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{index}-{number}.png"), full_page=True)
        context.close()
