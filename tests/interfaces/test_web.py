"""Routes of the page at `/` (service/web.py): what is served, with which headers, and what is refused."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.interfaces.api import create_app
from service.interfaces.web import STATIC_DIR


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(Settings(provider="embedded")))


def test_index_is_the_page(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="/static/app.js" defer></script>' in response.text
    assert '<link rel="stylesheet" href="/static/app.css">' in response.text
    assert 'id="summary"' in response.text and 'id="article"' in response.text


def test_page_headers_lock_it_to_its_own_origin(client: TestClient) -> None:
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "connect-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8")],
)
def test_assets_are_served_from_the_package(client: TestClient, name: str, media_type: str) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.content == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "path",
    ["/static/missing.js", "/static/..%2Fweb.py", "/static/%2e%2e%2fapi.py", "/static/", "/static/web.py"],
)
def test_unknown_or_escaping_asset_names_are_404_problems(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_page_routes_stay_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not any(p.startswith("/static") for p in paths)


def test_page_loads_nothing_from_another_origin() -> None:
    # Must work offline: no CDN script, stylesheet, font or import.
    external = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""")
    for path in STATIC_DIR.iterdir():
        assert not external.search(path.read_text(encoding="utf-8")), path.name


def test_script_never_parses_text_as_html() -> None:
    # Article and summary text are user-controlled; they may only enter the page as text nodes.
    source = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, sink


def test_repair_is_offered_only_with_a_model(client: TestClient, llm_settings: Settings) -> None:
    without = client.get("/").text
    assert '<option value="repair" disabled>' in without and "none is configured" in without
    assert '<option value="drop" selected>' in without
    from service.pipeline.llm import LLMClient

    with TestClient(create_app(llm_settings, llm=LLMClient(llm_settings))) as with_model:
        page = with_model.get("/")
    assert page.status_code == 200
    assert '<option value="repair">' in page.text and "disabled" not in page.text.split('value="repair"')[1][:20]
