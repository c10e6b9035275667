"""Versions of the libraries whose releases change a result or a timing."""

from importlib import metadata

__all__ = ["library_versions"]


def library_versions(*names: str) -> dict[str, str | None]:
    """Installed version of each named distribution, None where it is not installed."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
