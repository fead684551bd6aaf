"""How fast `litebase dev` starts cold, restarts warm and stops, against the Foundation goals.

Prints a markdown table; the ratio is measured / goal (below 1.0 meets the goal).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[1]
GOALS = {"cold start to /ready": None, "warm restart to /ready": 5.0, "stop after SIGINT": 10.0}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    started = time.perf_counter()
    argv = [sys.executable, "-m", "backend.cli", "dev", "--port", str(port)]
    process = subprocess.Popen(
        [*argv, "--data-dir", str(data_dir)],
        env={**env, "NO_COLOR": "1", "LOG_LEVEL": "WARNING"},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        if process.poll() is not None:
            raise SystemExit(f"litebase dev exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> float:
    started = time.perf_counter()
    process.send_signal(signal.SIGINT)
    process.wait(60)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lbbench-", dir="/tmp") as tmp:
        data_dir, port = Path(tmp) / "data", _free_port()
        process, cold = _start(data_dir, port)
        first_stop = _stop(process)
        process, warm = _start(data_dir, port)
        second_stop = _stop(process)
    measured = {
        "cold start to /ready": cold,
        "warm restart to /ready": warm,
        "stop after SIGINT": max(first_stop, second_stop),
    }
    print("| measure | seconds | goal | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in measured.items():
        goal = GOALS[name]
        ratio = f"{seconds / goal:.2f}" if goal else "—"
        print(f"| {name} | {seconds:.2f} | {goal or '—'} | {ratio} |")


if __name__ == "__main__":
    main()
