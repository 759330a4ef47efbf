"""Paths for messages: what stands in the way of a folder."""

from __future__ import annotations

from pathlib import Path


def blocking_file(folder: Path) -> Path:
    """The first of ``folder`` and its parents that is there but is not a folder (``folder``
    itself when none is): what made creating ``folder`` fail with FileExistsError or
    NotADirectoryError, for an error message to name."""
    for part in (folder, *folder.parents):
        if (part.exists() or part.is_symlink()) and not part.is_dir():
            return part
    return folder
