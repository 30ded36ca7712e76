"""The command line: `citesum summarize PATH|URL|-`, `citesum serve`, and the other subcommands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from service.auth import OpenAccessRefused, check_serving_access
from service.config import Settings, get_settings
from service.errors import SummaryError
from service.llm import LLMClient
from service.logs import configure_logging
from service.render import render_markdown, render_text
from service.schema import SummaryRequest, SummaryResponse
from service.summarize import summarize_request


def build_request(source: str, *, html: bool, max_sentences: int | None, policy: str | None) -> SummaryRequest:
    """A SummaryRequest from a path, a URL or '-' (stdin)."""
    if source.startswith(("http://", "https://")):
        return SummaryRequest(url=source, max_sentences=max_sentences, policy=policy)
    if source == "-":
        content = sys.stdin.read()
    else:
        path = Path(source)
        if not path.is_file():
            raise SummaryError(f"no such file: {source}")
        content = path.read_text(encoding="utf-8", errors="replace")
        html = html or path.suffix.lower() in {".html", ".htm"}
    field = "html" if html or content.lstrip()[:15].lower().startswith(("<!doctype html", "<html")) else "text"
    return SummaryRequest(**{field: content}, max_sentences=max_sentences, policy=policy)


async def _summarize(request: SummaryRequest, settings: Settings) -> SummaryResponse:
    llm = LLMClient(settings) if settings.llm_configured else None
    try:
        return await summarize_request(request, settings=settings, llm=llm)
    finally:
        if llm is not None:
            await llm.aclose()


def cmd_summarize(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        request = build_request(args.source, html=args.html, max_sentences=args.sentences, policy=args.policy)
        response = asyncio.run(_summarize(request, settings))
    except SummaryError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:  # pydantic validation of the request
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(response.model_dump_json(indent=2))
    elif args.markdown:
        print(render_markdown(response))
    else:
        print(render_text(response))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.api import create_app

    settings = get_settings()
    host = args.host or settings.host
    configure_logging(settings.log_format or "json", settings.log_level)
    try:
        check_serving_access(settings, host)  # auth.py: open access only on loopback unless allowed
    except OpenAccessRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(settings),
        host=host,
        port=args.port or settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep configure_logging's one handler (JSON by default)
        timeout_keep_alive=settings.http_keep_alive_s,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="citesum", description="Cited, verified summaries of news articles.")
    commands = parser.add_subparsers(dest="command", required=True)

    summarize = commands.add_parser("summarize", help="summarize a file, a URL, or '-' for stdin")
    summarize.add_argument("source", help="path to a .txt/.html file, an http(s) URL, or '-'")
    summarize.add_argument("-n", "--sentences", type=int, default=None, help="at most this many sentences")
    summarize.add_argument("--policy", choices=["drop", "flag", "repair"], default=None)
    summarize.add_argument("--html", action="store_true", help="treat the input as HTML")
    output = summarize.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the API's JSON response")
    output.add_argument("--markdown", action="store_true", help="print Markdown with footnotes")
    summarize.set_defaults(handler=cmd_summarize)

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(handler=cmd_serve)
    return parser


# Subcommands whose own modules parse their arguments.
DELEGATED = {
    "eval-verifier": ("service.evaluate", "eval_verifier_main"),
    "train-verifier": ("service.evaluate", "train_verifier_main"),
    "worker": ("service.worker", "worker_main"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `citesum` and `python -m service`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if get_settings().log_format == "json":
        configure_logging("json", "WARNING")
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in DELEGATED:
        import importlib

        module_name, function_name = DELEGATED[argv[0]]
        return getattr(importlib.import_module(module_name), function_name)(argv[1:])
    args = build_parser().parse_args(argv)
    return args.handler(args)
