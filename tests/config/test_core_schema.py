"""The `vendhub:` block: defaults, accepted values, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.conftest import WriteFile
from vendhub.config import ConfigError, load_configuration, validate_core


def core_errors(config_dir: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        validate_core(load_configuration(config_dir))
    return caught.value


DEFAULTS = {
    "name": "VendHub",
    "currency": "EUR",
    "time_zone": "UTC",
    "languages": ["en"],
    "units": "metric",
}


def test_missing_block_means_all_defaults(write: WriteFile, config_dir: Path) -> None:
    write("configuration.yaml", "simulator:\n  machines: []\n")
    assert validate_core(load_configuration(config_dir)) == DEFAULTS


def test_empty_block_means_all_defaults(write: WriteFile, config_dir: Path) -> None:
    write("configuration.yaml", "vendhub:\n")
    assert validate_core(load_configuration(config_dir)) == DEFAULTS


def test_full_block(write: WriteFile, config_dir: Path) -> None:
    write(
        "configuration.yaml",
        """
        vendhub:
          name: Station Lobby
          currency: RUB
          time_zone: Europe/Moscow
          languages: [ru, en, pt_BR]
          units: imperial
          internal_url: http://192.168.1.10:8123
        """,
    )
    core = validate_core(load_configuration(config_dir))
    assert core == {
        "name": "Station Lobby",
        "currency": "RUB",
        "time_zone": "Europe/Moscow",
        "languages": ["ru", "en", "pt_BR"],
        "units": "imperial",
        "internal_url": "http://192.168.1.10:8123",
    }
    assert type(core) is dict


def test_a_single_language_may_be_written_without_a_list(
    write: WriteFile, config_dir: Path
) -> None:
    write("configuration.yaml", "vendhub:\n  languages: ru\n")
    assert validate_core(load_configuration(config_dir))["languages"] == ["ru"]


def test_every_bad_value_is_located(write: WriteFile, config_dir: Path) -> None:
    write(
        "configuration.yaml",
        """
        vendhub:
          name: Lobby
          currncy: EUR
          time_zone: Europe/Berln
          languages: [en, pt-BR, en]
          units: metrik
          internal_url: hub.local
        """,
    )
    issues = {issue.line: issue for issue in core_errors(config_dir).issues}

    assert issues[3].path == ("vendhub",)
    assert issues[3].message == "unknown key 'currncy', did you mean 'currency'?"
    assert issues[4].path == ("vendhub", "time_zone")
    assert "did you mean 'Europe/Berlin'?" in issues[4].message
    assert issues[5].path == ("vendhub", "languages", 1)
    assert "did you mean 'pt_BR'?" in issues[5].message
    assert issues[6].path == ("vendhub", "units")
    assert "did you mean 'metric'?" in issues[6].message
    assert issues[7].path == ("vendhub", "internal_url")
    assert "did you mean 'http://hub.local'?" in issues[7].message
    assert str(issues[3]) == (
        "configuration.yaml:3: [vendhub] unknown key 'currncy', did you mean 'currency'?"
    )


def test_duplicate_and_empty_language_lists(write: WriteFile, config_dir: Path) -> None:
    write("configuration.yaml", "vendhub:\n  languages: [en, ru, en]\n")
    (issue,) = core_errors(config_dir).issues
    assert (issue.line, issue.path) == (2, ("vendhub", "languages"))
    assert "language 'en' is listed twice" in issue.message

    write("configuration.yaml", "vendhub:\n  languages: []\n")
    (issue,) = core_errors(config_dir).issues
    assert issue.line == 2
    assert "list at least one language" in issue.message


def test_block_that_is_not_a_mapping(write: WriteFile, config_dir: Path) -> None:
    write("configuration.yaml", "simulator: {}\nvendhub: Lobby\n")
    (issue,) = core_errors(config_dir).issues
    assert (issue.line, issue.path) == (2, ("vendhub",))
    assert issue.message == "expected a mapping (key: value lines), got 'Lobby' (str)"


def test_core_values_from_secrets_and_includes(write: WriteFile, config_dir: Path) -> None:
    write("secrets.yaml", "hub_url: http://10.0.0.2:8123\n")
    write("core.yaml", "name: Depot\ninternal_url: !secret hub_url\ncurrency: usd\n")
    write("configuration.yaml", "vendhub: !include core.yaml\n")
    (issue,) = core_errors(config_dir).issues
    assert issue.file == config_dir / "core.yaml"
    assert issue.line == 3
    assert "did you mean 'USD'?" in issue.message
