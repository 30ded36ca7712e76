"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

`docker-compose config -q` (Debian's docker-compose v1) parses and validates the file against the
compose schema with no engine running. Skipped only when the binary is missing and CI is unset.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SECRET_NAMES = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.I)


def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed (apt-get install -y docker-compose); CI must validate")
        pytest.skip("docker-compose is not installed (apt-get install -y docker-compose)")
    return binary


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    # A bare environment: the file must be valid with no variables set at all.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [compose_binary(), "-f", str(COMPOSE), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_compose_file_validates() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def resolved() -> dict[str, Any]:
    result = compose("--profile", "llm", "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_topology_has_api_workers_redis_and_an_llm_profile() -> None:
    services = resolved()["services"]
    assert {"api", "worker", "redis", "llm"} <= set(services)
    assert services["llm"]["profiles"] == ["llm"]
    assert "profiles" not in services["api"] and "profiles" not in services["worker"]
    for name in ("api", "worker", "redis", "llm"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("api", "worker"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["worker"]["command"] == ["python", "-m", "service", "worker"]
    # Published on the host's loopback only.
    assert [str(port) for port in services["api"]["ports"]] == ["127.0.0.1:8000:8000/tcp"]


def test_no_secret_is_written_in_the_file() -> None:
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    for name, value in raw["x-citesum"]["environment"].items():
        if SECRET_NAMES.search(name):
            assert re.fullmatch(r"\$\{" + name + r":-\}", str(value)), f"{name} must come from the environment"
    # ... and with nothing in the environment they resolve to empty.
    env = resolved()["services"]["api"]["environment"]
    assert all(env[name] in ("", None) for name in env if SECRET_NAMES.search(name))


def test_every_file_the_dockerfile_copies_exists() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    sources = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert sources
    for source in (s for group in sources for s in group):
        assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "service" not in ignored and "prompts" not in ignored
