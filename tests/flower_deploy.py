"""A real Flower deployment on loopback for tests: a SuperLink with TLS and
SuperNode authentication, SuperNodes started with their EC P-256 keys, and
``flwr run`` of the app in ``tests/flower_app``. Offline: no telemetry, no
update check, no runtime dependency installation. Every wait is bounded and
polls a condition; ``close`` ends every process it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from etcd_certs import TestCA

APP = Path(__file__).parent / "flower_app"
BIN = Path(sys.executable).parent
# Tests import the app's task module (its data and training) to recompute what ran.
sys.path.insert(0, str(APP))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_key(directory: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode's EC P-256 key pair: ``name`` (OpenSSH private key) and
    ``name.pub`` (OpenSSH), as ``flwr supernode register`` takes it."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = directory / name
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = directory / f"{name}.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n"
    )
    return private, public


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, proc: Proc | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            extra = f"\n{proc.tail()}" if proc is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(0.1)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-n:])


@dataclass
class Federation:
    """One SuperLink in ``directory`` with TLS and SuperNode authentication."""

    directory: Path
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(
            FLWR_TELEMETRY_ENABLED="0",
            FLWR_DISABLE_UPDATE_CHECK="1",
            FLWR_HOME=str(self.directory / "flwr-home"),
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
        )
        ca = TestCA(self.directory / "tls", "flower")
        self.ca = ca.ca
        self.cert, self.key = ca._issue(
            "superlink", ["127.0.0.1"], [ExtendedKeyUsageOID.SERVER_AUTH], dns=["localhost"]
        )
        home = Path(self.env["FLWR_HOME"])
        home.mkdir()
        (home / "config.toml").write_text(
            '[superlink]\ndefault = "loopback"\n\n'
            "[superlink.loopback]\n"
            f'address = "127.0.0.1:{self.port}"\n'
            f'root-certificates = "{self.ca}"\n'
        )

    def _start(self, name: str, args: list[str]) -> Proc:
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                args,
                cwd=self.directory,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_superlink(self) -> Proc:
        link = self._start(
            "superlink",
            [
                str(BIN / "flower-superlink"),
                "--ssl-ca-certfile", str(self.ca),
                "--ssl-certfile", str(self.cert),
                "--ssl-keyfile", str(self.key),
                "--enable-supernode-auth",
                "--disable-runtime-dependency-installation",
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--database", str(self.directory / "linkstate.db"),
            ],
        )  # fmt: skip
        wait_for("the SuperLink's port", lambda: _listening(self.port), 60, link)
        self.superlink = link
        return link

    def flwr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def register(self, public_key: Path) -> int:
        """``flwr supernode register``: the node id the SuperLink gives the key."""
        done = self.flwr("supernode", "register", str(public_key), "loopback", "--format", "json")
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            answer = {}
        if done.returncode != 0 or not answer.get("success"):
            raise AssertionError(f"flwr supernode register failed:\n{done.stdout}{done.stderr}")
        return int(answer["node-id"])

    def start_supernode(self, name: str, private_key: Path, node_config: str) -> Proc:
        return self._start(
            name,
            [
                str(BIN / "flower-supernode"),
                "--root-certificates", str(self.ca),
                "--superlink", f"127.0.0.1:{self.port}",
                "--port", str(free_port()),
                "--auth-supernode-private-key", str(private_key),
                "--node-config", node_config,
                "--max-retries", "0",
            ],
        )  # fmt: skip

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def copy_app(directory: Path) -> Path:
    """The app folder without caches, so its FAB is small and reproducible."""
    target = directory / "app"
    shutil.copytree(APP, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target
