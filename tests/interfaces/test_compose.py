"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

`docker-compose config -q` (Debian's docker-compose v1) parses and validates the file against the
compose schema with no engine running. Skipped only when the binary is missing and CI is unset.
A valid file is not a stack that starts, so the services built from this repository are also run as
processes, each with the image's ENV and its compose environment (from the documented `.env`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.core.config import Settings
from service.interfaces.auth import check_serving_access
from tests.process_helpers import free_port, service_env, start_service, stop, wait_for

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


def compose(*args: str, variables: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """docker-compose with only `variables` set (no `.env` read: --env-file points at an empty file)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **(variables or {})}
    with tempfile.NamedTemporaryFile(suffix=".env") as empty:
        return subprocess.run(
            [compose_binary(), "--env-file", empty.name, "-f", str(COMPOSE), *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )


def test_the_compose_file_validates_with_the_documented_env_file() -> None:
    result = compose("config", "-q", variables=documented_env_file())
    assert result.returncode == 0, result.stderr


def resolved() -> dict[str, Any]:
    result = compose("--profile", "llm", "config", variables={"CITESUM_API_KEYS": "k"})
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
    environments = [raw["x-citesum"]["environment"]] + [s.get("environment", {}) for s in raw["services"].values()]
    secrets = {name: str(value) for env in environments for name, value in env.items() if SECRET_NAMES.search(name)}
    assert "CITESUM_API_KEYS" in secrets and "OPENAI_API_KEY" in secrets
    for name, value in secrets.items():
        # Optional (`${NAME:-}`) or required with a message (`${NAME:?...}`): never a value.
        assert re.fullmatch(r"\$\{" + name + r"(:-|:\?[^}]+)\}", value), f"{name} must come from the environment"
    # ... and with only the required key set, the optional ones resolve to empty.
    env = resolved()["services"]["api"]["environment"]
    assert {name: env[name] for name in env if SECRET_NAMES.search(name) and env[name]} == {"CITESUM_API_KEYS": "k"}


def test_every_file_the_dockerfile_copies_exists() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    sources = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert sources
    for source in (s for group in sources for s in group):
        assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "service" not in ignored and "prompts" not in ignored


# --- the stack starts: each service's command run with the compose file's environment ----------------

# compose's variable syntax: $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
# (https://docs.docker.com/compose/how-tos/environment-variables/variable-interpolation/).
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class MissingVariable(ValueError):
    """A `${NAME:?message}` variable is unset (or empty): compose refuses the file."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """`value` with compose's variable substitution applied, reading variables from `env`."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["bare"] or match["name"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if present:
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return ""

    return INTERPOLATION.sub(substitute, value)


def resolve(node: Any, env: dict[str, str]) -> Any:
    """Every string in a parsed compose file interpolated with `env`."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def image_environment() -> dict[str, str]:
    """The `ENV` lines of the Dockerfile: what every container of the image starts with."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in shlex.split(line[4:]))
    return env


def documented_env_file() -> dict[str, str]:
    """The variables of `.env.example`, which docs/operations.md says to copy to `.env` and fill in."""
    env = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("$$SET ${SET} $SET ${UNSET} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d}", env) == "$SET x x  d  d"
    with pytest.raises(MissingVariable, match="UNSET: say why"):
        interpolate("${UNSET:?say why}", env)
    with pytest.raises(MissingVariable):
        interpolate("${EMPTY:?}", env)
    assert interpolate("${EMPTY?}", env) == ""


def test_the_stack_refuses_to_start_without_api_keys_and_says_which_variable() -> None:
    """Without keys, interpolation stops (as `docker-compose up` does) and names the variable."""
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    env = documented_env_file()
    env.pop("CITESUM_API_KEYS")
    with pytest.raises(MissingVariable, match="CITESUM_API_KEYS"):
        resolve(raw, env)
    if shutil.which("docker-compose"):
        result = compose("config", "-q")
        assert result.returncode != 0 and "CITESUM_API_KEYS" in result.stderr, result.stderr


def container_env(service: dict[str, Any], data_dir: Path, addresses: dict[str, str]) -> dict[str, str]:
    """The environment a container of `service` starts with, mapped onto this machine.

    The image's ENV, then the service's `environment`; the `/data` volume becomes `data_dir`, and
    `//service:port` addresses of other services become their loopback addresses here.
    """
    env = image_environment()
    env.update({key: "" if value is None else str(value) for key, value in service.get("environment", {}).items()})
    for key, value in env.items():
        value = value.replace("/data/", f"{data_dir}/")
        for address, here in addresses.items():
            value = value.replace(f"//{address}/", f"//{here}/")
        env[key] = value
    return env


def test_the_services_built_here_start_with_the_compose_environment(tmp_path: Path) -> None:
    """What `docker-compose up` runs, without a Docker engine: redis, the api and a worker, as processes.

    The file is resolved with the documented `.env`. Each service built from this repository runs
    its `command` with the image's ENV and its compose `environment`. The api must pass serve's
    access check for the container's address (0.0.0.0, where it refused to start without keys), then
    run on loopback, answer /healthz and pass its compose healthcheck; the worker must pass its own.
    The llm profile (llama.cpp, Dockerfile.llm) is not run here; tests/interfaces/test_real_model.py
    runs the same server and model.
    """
    services = resolve(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")), documented_env_file())["services"]
    built = sorted(name for name, s in services.items() if "build" in s and "llm" not in s.get("profiles", []))
    assert built == ["api", "worker"]
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")

    redis_port, api_port = free_port(), free_port()
    addresses = {"redis:6379": f"127.0.0.1:{redis_port}", "127.0.0.1:8000": f"127.0.0.1:{api_port}"}
    logs = {name: tmp_path / f"{name}.log" for name in ("redis", *built)}
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def log_of(name: str) -> str:
        return logs[name].read_text(encoding="utf-8", errors="replace")[-4000:]

    def run_healthcheck(name: str) -> bool:
        for other, process in processes.items():
            assert process.poll() is None, f"{other} exited with {process.returncode}:\n{log_of(other)}"
        test = [part.replace("127.0.0.1:8000", addresses["127.0.0.1:8000"]) for part in services[name]["healthcheck"]["test"]]
        assert test[:2] == ["CMD", "python"], test
        env = service_env(container_env(services[name], tmp_path, addresses))
        result = subprocess.run([sys.executable, *test[2:]], cwd=ROOT, env=env, capture_output=True, timeout=30)
        return result.returncode == 0

    try:
        redis_command = [redis_binary, *services["redis"]["command"][1:]]
        redis_command += ["--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""]
        with open(logs["redis"], "wb") as log:
            processes["redis"] = subprocess.Popen(redis_command, stdout=log, stderr=subprocess.STDOUT)
        for name in built:
            env = container_env(services[name], tmp_path, addresses)
            command = services[name]["command"]
            assert command[:3] == ["python", "-m", "service"], command
            if name == "api":
                # serve's start-up check with the container's address (the Dockerfile's 0.0.0.0) ...
                with pytest.MonkeyPatch.context() as patch:
                    for key, value in env.items():
                        patch.setenv(key, value)
                    check_serving_access(Settings(), env["CITESUM_HOST"])
                # ... then the process itself, on loopback.
                env.update(CITESUM_HOST="127.0.0.1", CITESUM_PORT=str(api_port))
            processes[name] = start_service(command[3:], service_env(env), logs[name])

        def api_answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(api_answers, 60, "the api to answer /healthz", watch=list(processes.values()))
        wait_for(lambda: run_healthcheck("api"), 30, "the api's compose healthcheck", interval_s=0.5)
        ready = httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=5).json()
        assert ready["jobs"] == "redis", ready
        # The key from .env opens /v1/*; no key is refused.
        key = documented_env_file()["CITESUM_API_KEYS"].split(",")[0]
        job_url = f"http://127.0.0.1:{api_port}/v1/jobs/no-such-job"
        assert httpx.get(job_url, timeout=5).status_code == 401
        assert httpx.get(job_url, headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code == 404
        wait_for(lambda: run_healthcheck("worker"), 60, "the worker's compose healthcheck", interval_s=1.0)
    finally:
        for process in reversed(processes.values()):
            stop(process)
