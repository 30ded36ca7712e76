"""The page at `/` in a real browser: Debian's headless Chromium driven by Playwright, against the real app."""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from service.core.config import Settings
from service.core.errors import URLNotAllowed
from service.interfaces.api import create_app
from service.interfaces.web import router as web_router

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SEED_TEXT = (ROOT / "seeds" / "belarus-putin-options.txt").read_text(encoding="utf-8")
CHROMIUM = Path("/usr/bin/chromium")
# Read at import: the autouse offline_environment fixture clears CITESUM_* variables before each test.
ARTIFACTS = Path(os.environ.get("CITESUM_ARTIFACTS_DIR") or ROOT / "tests" / "artifacts")
README_SCREENSHOT = ROOT / "docs" / "screenshot.png"
# Tests never write into the repo unless asked: CITESUM_UPDATE_README_SCREENSHOT=1 refreshes the README picture.
UPDATE_README_SCREENSHOT = os.environ.get("CITESUM_UPDATE_README_SCREENSHOT") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true but {CHROMIUM} is missing; .ci/run installs it with `apt-get install chromium`")
    pytest.skip(f"{CHROMIUM} is missing (install it with `apt-get install chromium`; on CI this fails)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """One Chromium per module with a fresh profile; never a downloaded browser."""
    _require_chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def serve() -> Iterator[Callable[[FastAPI], str]]:
    """Start apps with uvicorn on 127.0.0.1 (a free port, in a thread); returns their base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: FastAPI) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # the socket is handed to uvicorn, so no other process can take the port
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread))
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            thread.join(0.02)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def real_app_url(serve: Callable[[FastAPI], str]) -> str:
    """The real app on the embedded default: no LLM anywhere."""
    return serve(create_app(Settings(provider="embedded")))


def summarize_on_page(page: Page, base_url: str, text: str, *, policy: str = "drop") -> dict[str, Any]:
    """Paste `text`, submit, wait for the summary; return the JSON the server answered with."""
    page.goto(base_url + "/")
    page.fill("#text", text)
    page.select_option("#policy", policy)
    with page.expect_response("**/v1/summaries") as answer:
        page.click("#submit")
    expect(page.locator("#summary .sent").first).to_be_visible()
    accepted = answer.value
    assert accepted.status in (200, 202), accepted.text()
    if accepted.headers["content-type"].startswith("text/event-stream"):  # the page streams (issue 15)
        expect(page.locator("#progress")).to_be_hidden()  # the stream is over
        [done] = [block.splitlines() for block in accepted.text().split("\n\n") if "event: done" in block]
        return json.loads(next(line[len("data: ") :] for line in done if line.startswith("data: ")))
    if accepted.status == 200:
        return accepted.json()
    # The page asked for a job (Prefer: respond-async); read the finished job's result ourselves.
    job = page.request.get(base_url + accepted.headers["location"]).json()
    assert job["status"] == "succeeded", job
    return job["result"]


def cited_quotes(sentence: dict[str, Any]) -> list[str]:
    """A summary sentence's quotes, one per cited sentence, in article order (how the page shows them)."""
    by_id = {c["sentence_id"]: c for c in sentence["citations"]}
    return [c["quote"] for c in sorted(by_id.values(), key=lambda c: c["start"])]


def save_screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def test_clicking_a_summary_sentence_lights_up_its_quotes(page: Page, real_app_url: str) -> None:
    data = summarize_on_page(page, real_app_url, SEED_TEXT)
    text = data["document"]["text"]
    for sentence in data["summary"]:
        for c in sentence["citations"]:
            assert text[c["start"] : c["end"]] == c["quote"]

    # The sentence citing furthest down the article, so the page has to scroll to its evidence.
    index, sentence = max(enumerate(data["summary"]), key=lambda p: max(c["start"] for c in p[1]["citations"]))
    button = page.locator(f'#summary .sent[data-index="{index}"]')
    button.click()

    expect(button).to_have_attribute("aria-pressed", "true")
    highlighted = page.locator("#article .src.hl")
    assert highlighted.all_inner_texts() == cited_quotes(sentence)
    expect(highlighted.first).to_be_in_viewport()
    expect(page.locator("#summary .badge").first).to_have_text("supported")

    # The other way round: the source sentence names the summary sentences resting on it.
    highlighted.first.click()
    expect(page.locator("#article .backref-note")).to_contain_text("cited by")
    expect(page.locator("#article .backref-note .jump")).to_have_text([str(index + 1)])
    expect(button).to_have_class(re.compile(r"\bbackref\b"))

    page.mouse.move(0, 0)  # no hover preview in the picture
    page.eval_on_selector("#text", "area => { area.scrollTop = 0; }")  # the article's headline, not its end
    save_screenshot(page, "web-desktop.png", full_page=True)
    if UPDATE_README_SCREENSHOT:
        page.screenshot(path=str(README_SCREENSHOT), full_page=True)


def test_copy_buttons_give_numbered_citations_and_footnotes(page: Page, real_app_url: str) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=real_app_url)
    data = summarize_on_page(page, real_app_url, SEED_TEXT)
    first, quote = data["summary"][0], data["summary"][0]["citations"][0]["quote"]

    page.click("#copy-text")
    expect(page.locator("#copy-status")).to_have_text("Copied plain text.")
    plain = page.evaluate("navigator.clipboard.readText()")
    assert plain.startswith(f"{first['text']} [1]\n")
    assert f'\n[1] "{quote}" ({first["citations"][0]["sentence_id"]})\n' in plain

    page.click("#copy-md")
    expect(page.locator("#copy-status")).to_have_text("Copied Markdown.")
    markdown = page.evaluate("navigator.clipboard.readText()")
    assert markdown.startswith(f"{first['text']}[^1]\n\n")
    assert f'\n[^1]: "{quote}" ({first["citations"][0]["sentence_id"]})\n' in markdown


def test_phone_width_is_one_column_and_keyboard_works(page: Page, real_app_url: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    data = summarize_on_page(page, real_app_url, SEED_TEXT, policy="flag")

    # Both boxes measured in one go: the page may still be scrolling to the result.
    summary_box, article_box = page.evaluate(
        "['.summary-pane', '.article-pane'].map(s => document.querySelector(s).getBoundingClientRect().toJSON())"
    )
    assert abs(summary_box["x"] - article_box["x"]) < 1  # stacked, not side by side
    assert article_box["y"] >= summary_box["bottom"]
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll

    # Keyboard: Tab from the copy buttons reaches the first summary sentence; Enter pins, Space unpins.
    page.focus("#copy-md")
    page.keyboard.press("Tab")
    first = page.locator('#summary .sent[data-index="0"]')
    expect(first).to_be_focused()
    assert first.evaluate("b => getComputedStyle(b).outlineStyle") == "solid"  # visible focus ring
    expect(first.locator(".reason")).to_be_visible()  # the verdict's reason shows on focus
    page.keyboard.press("Enter")
    expect(first).to_have_attribute("aria-pressed", "true")
    assert page.locator("#article .src.hl").all_inner_texts() == cited_quotes(data["summary"][0])
    source = page.locator("#article .src.hl").first
    source.focus()  # cited article sentences are tab stops too; Enter tells which summary sentences use them
    page.keyboard.press("Enter")
    expect(page.locator("#article .backref-note")).to_contain_text("cited by")
    first.focus()
    page.keyboard.press(" ")
    expect(first).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#article .src.hl")).to_have_count(0)

    page.keyboard.press("Enter")
    page.evaluate("document.querySelector('.summary-pane').scrollIntoView()")
    page.mouse.move(0, 0)  # the pointer is left over a sentence by earlier steps: no hover in the picture
    save_screenshot(page, "web-phone.png")


def test_problem_json_errors_show_title_and_detail(page: Page, real_app_url: str) -> None:
    page.goto(real_app_url + "/")
    page.fill("#text", "  \n ")
    page.click("#submit")
    expect(page.locator("#error-title")).to_have_text("Nothing to summarize")  # caught before any request

    page.fill("#text", SEED_TEXT)
    page.fill("#max-sentences", "99")  # over the API's limit of 30: the server's 422 must be shown as is
    with page.expect_response("**/v1/summaries") as answer:
        page.click("#submit")
    problem = answer.value.json()
    assert answer.value.status >= 400
    assert answer.value.headers["content-type"].startswith("application/problem+json")
    expect(page.locator("#error-title")).to_have_text(problem["title"])
    expect(page.locator("#error-detail")).to_contain_text(problem["detail"])
    expect(page.locator("#result")).to_be_hidden()

    # A refused link (loopback) fails inside the job the page polls; its problem is shown the same way.
    page.check('input[name="kind"][value="url"]')
    page.fill("#max-sentences", "3")
    page.fill("#url", "http://127.0.0.1:9/article")
    page.click("#submit")
    expect(page.locator("#error-title")).to_have_text(URLNotAllowed.title)
    expect(page.locator("#error-detail")).to_contain_text("127.0.0.1")
    save_screenshot(page, "web-error.png")


def test_a_server_with_api_keys_asks_for_one_and_the_page_sends_it(
    page: Page, serve: Callable[[FastAPI], str]
) -> None:
    url = serve(create_app(Settings(provider="embedded", api_keys="k-browser-1")))
    page.goto(url + "/")
    expect(page.locator("#key-field")).to_be_hidden()  # open servers never show it
    page.fill("#text", SEED_TEXT)
    with page.expect_response("**/v1/summaries") as refused:
        page.click("#submit")
    assert refused.value.status == 401
    expect(page.locator("#error-title")).to_have_text(refused.value.json()["title"])
    expect(page.locator("#key-field")).to_be_visible()
    expect(page.locator("#api-key")).to_be_focused()

    page.fill("#api-key", "k-browser-1")
    with page.expect_request("**/v1/summaries") as sent:
        page.click("#submit")
    assert sent.value.headers["authorization"] == "Bearer k-browser-1"
    expect(page.locator("#summary .sent").first).to_be_visible()  # the job it started was polled with the key
    expect(page.locator("#error")).to_be_hidden()

    page.reload()  # the key stays for this tab, so the next summary needs no retyping
    expect(page.locator("#api-key")).to_have_value("k-browser-1")


@pytest.fixture(scope="module")
def embedded_response() -> dict[str, Any]:
    """The real pipeline's answer for the seed article (embedded default), as the API would send it."""
    with TestClient(create_app(Settings(provider="embedded"))) as client:
        response = client.post("/v1/summaries", json={"text": SEED_TEXT, "include_sentences": True})
    assert response.status_code == 200, response.text
    return response.json()


def page_only_app() -> FastAPI:
    """The page's router alone, for stand-in API routes that exercise what the real app rarely does."""
    app = FastAPI()
    app.include_router(web_router)
    return app


def test_job_progress_is_shown_while_polling(
    page: Page, serve: Callable[[FastAPI], str], embedded_response: dict[str, Any]
) -> None:
    """A server that answers 202 with a job (GET /v1/jobs/{id}) gets chunks-done-of-total progress."""
    app = page_only_app()
    release = threading.Event()  # the job stays at 2 of 3 until the test has seen it there
    polls = {"count": 0}

    def job(status: str, done: int, total: int, result: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": "j1",
            "url": "/v1/jobs/j1",
            "status": status,
            "attempts": 1,
            "progress": {"done": done, "total": total},
            "result": result,
            "error": None,
        }

    @app.post("/v1/summaries", status_code=202)
    async def accept() -> dict[str, Any]:
        return job("queued", 0, 0)

    @app.get("/v1/jobs/j1")
    async def poll() -> dict[str, Any]:
        polls["count"] += 1
        if polls["count"] == 1:
            return job("running", 1, 3)
        if not release.is_set():
            return job("running", 2, 3)
        return job("succeeded", 3, 3, embedded_response)

    page.goto(serve(app) + "/")
    page.fill("#text", SEED_TEXT)
    page.click("#submit")
    expect(page.locator("#progress-text")).to_contain_text("2 of 3 chunks summarized")
    expect(page.locator("#progress-bar")).to_have_attribute("max", "3")
    assert page.eval_on_selector("#progress-bar", "bar => bar.value") == 2
    expect(page.locator("#submit")).to_be_disabled()
    release.set()
    expect(page.locator("#summary .sent")).to_have_count(len(embedded_response["summary"]))
    expect(page.locator("#progress")).to_be_hidden()
    expect(page.locator("#submit")).to_be_enabled()


def test_unsupported_sentences_show_badge_reason_and_dropped_count(
    page: Page, serve: Callable[[FastAPI], str], embedded_response: dict[str, Any]
) -> None:
    # The embedded summarizer copies source sentences, so it never fails verification: stand in for a model
    # that invented a number, once flagged and once dropped.
    answer = copy.deepcopy(embedded_response)
    reason = "number 400 not in evidence"
    answer["policy"] = "flag"
    answer["summary"][1].update(verdict="unsupported", score=0.2, reason=reason)
    answer["dropped"] = [{"text": "Russia sent 400 trucks.", "cited_ids": ["s3"], "score": 0.1, "reason": reason}]
    app = page_only_app()

    @app.post("/v1/summaries")
    async def summarize() -> dict[str, Any]:
        return answer

    page.goto(serve(app) + "/")
    page.fill("#text", SEED_TEXT)
    page.click("#submit")
    flagged = page.locator('#summary .sent[data-index="1"]')
    badge = flagged.locator(".badge")
    expect(badge).to_have_text("unsupported · flagged")
    expect(badge).to_have_attribute("title", re.compile(re.escape(reason)))
    expect(flagged.locator(".reason")).to_be_hidden()
    flagged.hover()
    expect(flagged.locator(".reason")).to_contain_text(reason)
    expect(page.locator("#dropped-count")).to_have_text("1 sentence dropped as unsupported")
    page.click("#dropped-count")
    expect(page.locator("#dropped-list li")).to_contain_text(["Russia sent 400 trucks. — " + reason])
    save_screenshot(page, "web-flagged.png", full_page=True)


def test_sentences_appear_lit_up_as_they_are_verified_then_the_full_view(
    page: Page, serve: Callable[[FastAPI], str], embedded_response: dict[str, Any]
) -> None:
    """A streamed answer (Accept: text/event-stream): each sentence shows the moment its event arrives."""
    from fastapi.responses import StreamingResponse

    app = page_only_app()
    release = threading.Event()  # the stream holds after the first sentence until the test has seen it
    asked: dict[str, str] = {}

    def event(kind: str, data: dict[str, Any]) -> bytes:
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    def stream() -> Iterator[bytes]:
        yield event("progress", {"done": 0, "total": 1})
        first, *rest = embedded_response["summary"]
        yield event("sentence", first)
        release.wait(10)
        for sentence in rest:
            yield event("sentence", sentence)
        yield event("done", embedded_response)

    @app.post("/v1/summaries")
    async def summaries(request: Request) -> StreamingResponse:
        asked["accept"] = request.headers.get("accept", "")
        return StreamingResponse(stream(), media_type="text/event-stream")

    page.goto(serve(app) + "/")
    page.fill("#text", SEED_TEXT)
    page.click("#submit")
    live = page.locator("#summary .sent.live")
    expect(live).to_have_count(1)
    expect(live.first).to_have_class(re.compile(r"\blit\b"))
    expect(live.first.locator(".sent-text")).to_have_text(embedded_response["summary"][0]["text"])
    expect(live.first.locator(".badge")).to_have_text("supported")
    expect(page.locator("#meta")).to_contain_text("1 sentence verified so far")
    expect(page.locator("#submit")).to_be_disabled()  # still streaming
    assert "text/event-stream" in asked["accept"]
    release.set()
    # done: the interactive view, with the article and its evidence
    expect(page.locator("#summary .sent.live")).to_have_count(0)
    expect(page.locator("#summary .sent")).to_have_count(len(embedded_response["summary"]))
    expect(page.locator("#article .src.cited").first).to_be_visible()
    expect(page.locator("#progress")).to_be_hidden()


def test_an_error_event_keeps_the_sentences_already_shown(
    page: Page, serve: Callable[[FastAPI], str], embedded_response: dict[str, Any]
) -> None:
    from fastapi.responses import StreamingResponse

    app = page_only_app()
    problem = {"type": "urn:citesum:problem:llm-unavailable", "title": "The language model is unavailable",
               "status": 503, "detail": "the stream was cut after part of the answer was sent; not retried"}

    @app.post("/v1/summaries")
    async def summaries() -> StreamingResponse:
        first = embedded_response["summary"][0]
        body = f"event: sentence\ndata: {json.dumps(first)}\n\nevent: error\ndata: {json.dumps(problem)}\n\n"
        return StreamingResponse(iter([body.encode()]), media_type="text/event-stream")

    page.goto(serve(app) + "/")
    page.fill("#text", SEED_TEXT)
    page.click("#submit")
    expect(page.locator("#error-title")).to_have_text("The language model is unavailable")
    expect(page.locator("#error-detail")).to_contain_text("not retried")
    expect(page.locator("#summary .sent.live")).to_have_count(1)
    expect(page.locator("#submit")).to_be_enabled()

