"""The browser page at `/`: index.html and its static assets, served from the package directory."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

STATIC_DIR = Path(__file__).parent / "static"

# Everything the page loads comes from this origin: no CDN, no inline script, nothing to inject into.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files that change with each release: revalidate rather than serve a stale app.js.
    "Cache-Control": "no-cache",
}
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

router = APIRouter(tags=["web"])


def _static_file(name: str) -> FileResponse:
    """A file from STATIC_DIR by bare name, or 404; a name can never climb out of the directory."""
    # Only names that are actually in the directory are served, so "..", "/" and "%2e" never resolve.
    available = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()}
    path = available.get(name)
    if path is None or path.suffix not in _MEDIA_TYPES:
        raise HTTPException(status_code=404, detail=f"No static file named {name!r}.")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_HEADERS)


_REPAIR_OPTION = '<option value="repair">ask the model to repair them</option>'
_REPAIR_NEEDS_A_MODEL = (
    '<option value="repair" disabled>repair them (needs a model; none is configured)</option>'
)


@router.get("/", include_in_schema=False, response_model=None)
async def index(request: Request) -> FileResponse | HTMLResponse:
    """The summarizer page; without a model configured, its "repair" choice is shown disabled."""
    if getattr(request.app.state, "llm", None) is not None:
        return _static_file("index.html")
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8").replace(_REPAIR_OPTION, _REPAIR_NEEDS_A_MODEL)
    return HTMLResponse(page, headers=_HEADERS)


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    """One of the page's assets (app.js, app.css, ...)."""
    return _static_file(name)
