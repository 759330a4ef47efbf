"""Helpers that write real integrations and configurations into a temporary folder."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest


def write_integration(config_dir: Path, domain: str, code: str, **manifest: object) -> Path:
    """Write ``<config_dir>/custom_integrations/<domain>/`` with a manifest and ``code``."""
    folder = config_dir / "custom_integrations" / domain
    folder.mkdir(parents=True, exist_ok=True)
    content = {
        "domain": domain,
        "name": domain.title(),
        "version": "1.0.0",
        "iot_class": "calculated",
        **manifest,
    }
    (folder / "manifest.json").write_text(json.dumps(content))
    (folder / "__init__.py").write_text(textwrap.dedent(code))
    return folder


def write_config(config_dir: Path, text: str) -> Path:
    """Write ``configuration.yaml``."""
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "configuration.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# A setup that records its start and end in hub.data["order"].
RECORDING_SETUP = """
import asyncio
from vendhub.plugins import hookimpl

@hookimpl
def vendhub_setup(hub, config):
    async def setup():
        hub.data.setdefault("order", []).append("start {domain}")
        await asyncio.sleep({delay})
        hub.data["order"].append("end {domain}")
    return setup()
"""


def recording(domain: str, delay: float = 0.0) -> str:
    return RECORDING_SETUP.replace("{domain}", domain).replace("{delay}", str(delay))


@pytest.fixture(autouse=True)
def forget_custom_modules() -> Iterator[None]:
    """Each test's custom integrations are imported fresh."""
    yield
    for name in [n for n in sys.modules if n.startswith("vendhub_custom_integrations")]:
        del sys.modules[name]
