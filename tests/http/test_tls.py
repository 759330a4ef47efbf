"""TLS: `vendhub certs generate`, the API over HTTPS with HSTS, and a broken pair refused."""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from vendhub.core.hub import Hub
from vendhub.http.server import get_http
from vendhub_integrations.http import CONFIG_SCHEMA, async_setup


def generate(config_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vendhub", "certs", "generate", "--config", str(config_dir), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_generate_writes_a_pair_names_the_hosts_and_refuses_to_overwrite(tmp_path: Path) -> None:
    done = generate(tmp_path, "--host", "192.168.1.20", "--host", "hub.local")
    assert done.returncode == 0, done.stderr
    assert "ssl_certificate: certs/vendhub.crt" in done.stdout
    key = tmp_path / "certs" / "vendhub.key"
    assert key.stat().st_mode & 0o777 == 0o600
    certificate = x509.load_pem_x509_certificate((tmp_path / "certs" / "vendhub.crt").read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "hub.local" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "::1",
        "192.168.1.20",
    ]
    again = generate(tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr
    assert generate(tmp_path, "--force").returncode == 0


async def test_the_api_speaks_https_with_hsts(tmp_path: Path) -> None:
    assert generate(tmp_path).returncode == 0
    hub = Hub(tmp_path)
    config = CONFIG_SCHEMA(
        {
            "server_host": "127.0.0.1",
            "server_port": 0,
            "ssl_certificate": "certs/vendhub.crt",
            "ssl_key": "certs/vendhub.key",
        }
    )
    assert await async_setup(hub, config)
    try:
        url = get_http(hub).url
        assert url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(tmp_path / "certs" / "vendhub.crt"))
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/api/health", ssl=trust) as response:
                assert response.status == 200
                assert response.headers["Strict-Transport-Security"].startswith("max-age=")
            with pytest.raises(aiohttp.ClientError):
                async with session.get(url.replace("https", "http") + "/api/health") as response:
                    await response.read()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.get(url + "/api/health") as response:
                    await response.read()
    finally:
        await hub.async_stop()


def test_a_certificate_without_its_key_is_a_config_error() -> None:
    with pytest.raises(Exception, match="ssl_certificate and ssl_key go together"):
        CONFIG_SCHEMA({"ssl_certificate": "certs/vendhub.crt"})


async def test_an_unreadable_certificate_is_one_clear_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(tmp_path)
    caplog.set_level(logging.ERROR)
    config = CONFIG_SCHEMA(
        {"server_port": 0, "ssl_certificate": "missing.crt", "ssl_key": "missing.key"}
    )
    assert await async_setup(hub, config) is False
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(messages) == 1 and "vendhub certs generate" in messages[0]
    await hub.async_stop()
