# The citesum service image: the API (`python -m service serve`) and the worker (`python -m service worker`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 citesum && mkdir -p /data && chown citesum /data

# Dependencies first, so editing the code does not reinstall them.
COPY pyproject.toml README.md ./
COPY service/__init__.py service/__init__.py
RUN pip install '.[redis]' && pip uninstall -y citesum

# Installed in place (editable): prompts/ is read from next to the package.
COPY service/ service/
COPY prompts/ prompts/
RUN pip install --no-deps -e .

USER citesum
# In a container the API must listen on all of its interfaces; the compose file publishes it on the
# host's loopback only. SQLite (embedded mode) lives on the /data volume.
ENV CITESUM_HOST=0.0.0.0 \
    CITESUM_PORT=8000 \
    CITESUM_JOB_DB_PATH=/data/jobs.sqlite3
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["python", "-m", "service", "serve"]
