"""Discovery: built-in, custom and entry-point integrations, and manifest problems."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.conftest import write_integration
from vendhub.plugins.discovery import IntegrationSource, discover_integrations
from vendhub.plugins.manifest import Manifest, ManifestError


def test_builtin_simulator_is_found(tmp_path: Path) -> None:
    found = discover_integrations(tmp_path)
    simulator = found.integrations["simulator"]
    assert simulator.source is IntegrationSource.builtin
    assert simulator.module_name == "vendhub_integrations.simulator"
    assert found.problems == []


def test_custom_integration_is_found_and_overrides_builtin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_integration(tmp_path, "acme", "")
    write_integration(tmp_path, "simulator", "")
    found = discover_integrations(tmp_path)
    assert found.integrations["acme"].source is IntegrationSource.custom
    assert found.integrations["simulator"].source is IntegrationSource.custom
    assert "overrides" in caplog.text


def test_bad_custom_integrations_are_reported_not_fatal(tmp_path: Path) -> None:
    write_integration(tmp_path, "good", "")
    bad = write_integration(tmp_path, "bad_manifest", "")
    (bad / "manifest.json").write_text("{not json")
    wrong = write_integration(tmp_path, "wrong_folder", "")
    manifest = json.loads((wrong / "manifest.json").read_text())
    (wrong / "manifest.json").write_text(json.dumps({**manifest, "domain": "other"}))
    no_init = write_integration(tmp_path, "no_init", "")
    (no_init / "__init__.py").unlink()

    found = discover_integrations(tmp_path)

    assert "good" in found.integrations
    text = "\n".join(found.problems)
    assert "bad_manifest" in text and "cannot read manifest" in text
    assert "'other' does not match its folder name 'wrong_folder'" in text
    assert "no_init/__init__.py is missing" in text
    assert len(found.problems) == 3


def test_manifest_validation_names_the_problem() -> None:
    with pytest.raises(ManifestError, match="iot_class"):
        Manifest.from_dict({"domain": "x", "name": "X", "version": "1"}, "x/manifest.json")
    with pytest.raises(ManifestError, match="domain"):
        Manifest.from_dict(
            {"domain": "Bad-Name", "name": "X", "version": "1", "iot_class": "calculated"},
            "x/manifest.json",
        )


@pytest.fixture
def installed_package(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution ``acme-vendhub`` declaring a ``vendhub.integrations`` entry point.

    It is laid out exactly as pip installs it (a package and its .dist-info) in a site folder
    put on sys.path, which is where importlib.metadata looks for installed distributions.
    """
    site = tmp_path / "site"
    package = site / "acme_vendhub"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from vendhub.plugins import hookimpl

            MANIFEST = {"domain": "acme", "name": "Acme Pay", "version": "2.0.0",
                        "iot_class": "cloud_push"}

            @hookimpl
            def vendhub_setup(hub, config):
                hub.data["acme"] = config
            """
        )
    )
    dist_info = site / "acme_vendhub-2.0.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-vendhub\nVersion: 2.0.0\n"
    )
    (dist_info / "entry_points.txt").write_text("[vendhub.integrations]\nacme = acme_vendhub\n")
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))
    sys.modules.pop("acme_vendhub", None)


def test_entry_point_integration_is_found(installed_package: Path, tmp_path: Path) -> None:
    found = discover_integrations(tmp_path / "config")
    acme = found.integrations["acme"]
    assert acme.source is IntegrationSource.entry_point
    assert acme.manifest.version == "2.0.0"
    assert acme.module is not None and acme.module.__name__ == "acme_vendhub"
