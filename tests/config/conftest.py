"""Helpers for writing real YAML files into a temporary config folder."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

WriteFile = Callable[[str, str], Path]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    return folder


@pytest.fixture
def write(config_dir: Path) -> WriteFile:
    """write("sub/x.yaml", text) -> the file's path; text is dedented."""

    def write_file(relative_path: str, text: str) -> Path:
        file = config_dir / relative_path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return file

    return write_file
