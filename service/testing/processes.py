"""Stopping a child process the same way everywhere (tests, the simulated model, the local model, bench)."""

from __future__ import annotations

import subprocess
from typing import Any

__all__ = ["stop_process"]


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 15.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit within `timeout_s`; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
