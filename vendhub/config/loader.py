"""Loads the whole configuration from a config folder."""

from __future__ import annotations

from pathlib import Path

from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.config.nodes import NodeDict, SourceLocation
from vendhub.config.yaml_loader import load_yaml

CONFIGURATION_FILE_NAME = "configuration.yaml"

_HOW_TO_FIX = f"run with --config pointing at the folder that holds {CONFIGURATION_FILE_NAME}"


def load_configuration(config_dir: Path) -> NodeDict:
    """`<config_dir>/configuration.yaml` with every tag resolved.

    Top-level keys are `vendhub` and integration domains. An empty file is an empty
    configuration. Raises ConfigError.
    """
    config_dir = Path(config_dir).resolve()
    config_file = config_dir / CONFIGURATION_FILE_NAME
    if not config_dir.is_dir():
        state = "is a file, not a folder" if config_dir.exists() else "does not exist"
        raise ConfigError(
            ConfigIssue(f"configuration folder {config_dir} {state}; {_HOW_TO_FIX}", None, None)
        )
    if not config_file.is_file():
        raise ConfigError(
            ConfigIssue(f"no {CONFIGURATION_FILE_NAME} in {config_dir}; {_HOW_TO_FIX}", None, None)
        )
    tree = load_yaml(config_file, config_root=config_dir)
    if tree is None:
        return NodeDict(source=SourceLocation(config_file, 1, config_dir))
    if not isinstance(tree, NodeDict):
        kind = "a list" if isinstance(tree, list) else "a single value"
        raise ConfigError(
            ConfigIssue.at(
                f"{CONFIGURATION_FILE_NAME} must be a mapping of integration domains "
                f"('vendhub:', 'mqtt:', ...), got {kind}",
                getattr(tree, "source", None) or SourceLocation(config_file, 1, config_dir),
            )
        )
    non_text_keys = [key for key in tree if not isinstance(key, str)]
    if non_text_keys:
        raise ConfigError(
            ConfigIssue.at(
                f"top-level key {key!r} is not an integration domain name such as 'mqtt'",
                tree.key_source(key),
            )
            for key in non_text_keys
        )
    return tree
