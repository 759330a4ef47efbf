"""load_configuration: the config folder, configuration.yaml and the whole tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.conftest import WriteFile
from vendhub.config import ConfigError, NodeDict, SourceLocation, load_configuration


def configuration_error(config_dir: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_configuration(config_dir)
    assert len(caught.value.issues) == 1
    return str(caught.value)


def test_loads_the_whole_tree(write: WriteFile, config_dir: Path) -> None:
    main = write(
        "configuration.yaml",
        "vendhub:\n  name: Lobby\nsimulator: !include simulator.yaml\nmqtt:\n",
    )
    write("simulator.yaml", "machines: []\n")

    tree = load_configuration(config_dir)

    assert isinstance(tree, NodeDict)
    assert tree == {"vendhub": {"name": "Lobby"}, "simulator": {"machines": []}, "mqtt": None}
    assert tree.key_source("mqtt") == SourceLocation(main, 4)


def test_empty_configuration_is_an_empty_tree(write: WriteFile, config_dir: Path) -> None:
    write("configuration.yaml", "")
    assert load_configuration(config_dir) == {}


def test_missing_folder_says_how_to_fix_it(tmp_path: Path) -> None:
    message = configuration_error(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in message
    assert "does not exist" in message
    assert "run with --config pointing at the folder that holds configuration.yaml" in message


def test_a_file_instead_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text("a: 1\n", encoding="utf-8")
    message = configuration_error(tmp_path / "configuration.yaml")
    assert "is a file, not a folder" in message
    assert "--config" in message


def test_missing_configuration_yaml(config_dir: Path) -> None:
    message = configuration_error(config_dir)
    assert f"no configuration.yaml in {config_dir}" in message
    assert "--config" in message


def test_top_level_must_be_a_mapping(write: WriteFile, config_dir: Path) -> None:
    write("configuration.yaml", "- vendhub\n- mqtt\n")
    message = configuration_error(config_dir)
    assert message.startswith("configuration.yaml:1: configuration.yaml must be a mapping")
    assert "got a list" in message


def test_top_level_keys_must_be_domain_names(write: WriteFile, config_dir: Path) -> None:
    write("configuration.yaml", "vendhub:\n42: x\n")
    assert configuration_error(config_dir).startswith(
        "configuration.yaml:2: top-level key 42 is not an integration domain name"
    )


def test_relative_config_dir(
    write: WriteFile, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("configuration.yaml", "a: !include b.yaml\n")
    write("b.yaml", "c: [1, 2\n")
    monkeypatch.chdir(config_dir.parent)
    message = configuration_error(Path("config"))
    assert message.startswith("b.yaml:2: invalid YAML")
