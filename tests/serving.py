"""Run `modelchain serve` as a real process on a free loopback port."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

STARTUP_S = 120  # generous: the machine running the suite may be busy


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server process: SIGTERM, then SIGKILL if it has not exited in 60 s."""
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(
    ledger_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    port: int | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[str]:
    """Start the server on ``ledger_dir`` (with ``tls``: cert and key files);
    yield its base URL; stop it (SIGTERM)."""
    port = port or free_port()
    if tls is not None:
        args = (*args, "--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1]))
    e = dict(os.environ if env is None else env)
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelchain",
            "serve",
            "--ledger",
            str(ledger_dir),
            "--port",
            str(port),
            *args,
        ],
        env=e,
        stdout=out,
        stderr=out,
    )
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=tls[0]) if tls else True
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                if httpx.get(url + "/healthz", timeout=5, verify=verify).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not come up in {STARTUP_S} s")
            time.sleep(0.1)
        yield url
    finally:
        stop_process(proc)
        if log is not None:
            out.close()  # type: ignore[union-attr]
