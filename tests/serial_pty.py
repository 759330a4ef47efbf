"""Two connected pseudo-terminals made by socat: a serial cable for emulated devices.

The device emulator opens one end, the integration under test the other, each as it would a
``/dev/ttyUSB0``: the bytes (and their timing) are the real protocol's. ``socat`` comes from
the ``socat`` package (``scripts/test`` installs it on Debian when it runs as root).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

_PTY_LINE = re.compile(rb"PTY is (\S+)")


@dataclass(frozen=True)
class PtyPair:
    device: str
    """The end the emulated device opens."""
    host: str
    """The end the integration opens, as its serial port."""


@asynccontextmanager
async def pty_pair() -> AsyncIterator[PtyPair]:
    """Start ``socat`` with two raw ptys joined together; stop it afterwards."""
    socat = shutil.which("socat")
    if socat is None:
        if os.environ.get("CI") == "true":
            pytest.fail("socat is missing: install the socat package (scripts/test does, as root)")
        pytest.skip("socat is missing: apt-get install socat (scripts/test does, as root)")
    process = await asyncio.create_subprocess_exec(
        socat,
        "-d",
        "-d",
        "pty,raw,echo=0",
        "pty,raw,echo=0",
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    paths: list[str] = []
    try:
        async with asyncio.timeout(10):
            while len(paths) < 2:
                line = await process.stderr.readline()
                if not line:
                    raise RuntimeError("socat ended before it opened two ptys")
                found = _PTY_LINE.search(line)
                if found:
                    paths.append(found.group(1).decode())
        yield PtyPair(device=paths[0], host=paths[1])
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.fixture
async def serial_pair() -> AsyncIterator[PtyPair]:
    """A fresh socat pty pair for one test."""
    async with pty_pair() as pair:
        yield pair
