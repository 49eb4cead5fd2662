"""Helpers shared by the importer tests."""

from __future__ import annotations

from pathlib import Path


def files_under(folder: Path) -> list[Path]:
    """Every file written under `folder` (hidden temporary files included)."""
    return (
        sorted(p for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).exists() else []
    )
