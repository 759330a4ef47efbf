"""YAML configuration: loading with tags, locations for every value, validation."""

from vendhub.config.core_schema import CORE_SCHEMA, validate_core
from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.config.loader import CONFIGURATION_FILE_NAME, load_configuration
from vendhub.config.nodes import NodeDict, NodeList, NodeStr, SourceLocation
from vendhub.config.validation import validate
from vendhub.config.yaml_loader import load_yaml

__all__ = [
    "CONFIGURATION_FILE_NAME",
    "CORE_SCHEMA",
    "ConfigError",
    "ConfigIssue",
    "NodeDict",
    "NodeList",
    "NodeStr",
    "SourceLocation",
    "load_configuration",
    "load_yaml",
    "validate",
    "validate_core",
]
