"""A real Mosquitto for tests: ``mosquitto -c <generated conf>`` on a free port.

The shared broker on 1883 is never touched; each test module starts its own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mosquitto:
    """``mosquitto -c <generated conf>`` on 127.0.0.1:<free port>, anonymous, persistent.

    ``stop()`` then ``start()`` keeps the port and the persistence file, as a broker restart
    does, so sessions and queued QoS 1 messages survive it. ``password_file``, ``acl_file``
    and ``allow_anonymous=False`` make it check credentials and topics. ``certfile`` and
    ``keyfile`` (and ``cafile``, the CA that signed them) make the listener speak TLS only,
    without asking clients for certificates (``require_certificate false``).
    """

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        *,
        allow_anonymous: bool = True,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        cafile: Path | None = None,
    ) -> None:
        if (certfile is None) != (keyfile is None):
            raise ValueError("a TLS listener needs both certfile and keyfile")
        if cafile is not None and certfile is None:
            raise ValueError("cafile is for a TLS listener: give certfile and keyfile too")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.tls = certfile is not None
        lines = [f"listener {self.port} 127.0.0.1"]
        if certfile is not None:
            # Listener options: they apply to the 'listener' line above them.
            lines += [f"certfile {certfile}", f"keyfile {keyfile}"]
            if cafile is not None:
                lines.append(f"cafile {cafile}")
            lines.append("require_certificate false")
        lines += [
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            "persistence true",
            f"persistence_location {folder}/",
            f"log_dest file {self.log}",
            "log_type all",
        ]
        if password_file is not None:
            lines.append(f"password_file {password_file}")
        if acl_file is not None:
            lines.append(f"acl_file {acl_file}")
        if os.geteuid() == 0:
            # Started as root, Mosquitto drops to the 'mosquitto' user, which cannot write
            # the persistence file into the test's folder.
            lines.append("user root")
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until the port accepts connections (TCP: a TLS listener too)."""
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {error}{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.01)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        """Stop (SIGTERM: it saves its persistence file first) and wait for it."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def log_tail(self, size: int = 3000) -> str:
        """The end of the broker's log, for failure messages."""
        try:
            return self.log.read_text()[-size:]
        except OSError:
            return ""
