"""The project's name and version, as its package metadata states them (pyproject.toml).

Recorded in every model folder (`lacp.model_io`), so a trained model says which version of
the project made it.
"""

from __future__ import annotations

from importlib import metadata

PROJECT = "lacp-pipeline"


def project_version() -> str:
    """The installed version of the project (`pip install -e .` installs it).

    Returns:
        e.g. "0.1.0"; "unknown" when the project runs from a checkout that was never installed.
    """
    try:
        return metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        return "unknown"
