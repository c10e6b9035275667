"""A content-addressed artifact store: one directory per stage result, keyed by its inputs.

An entry is ``<root>/<stage>/<key>/`` with the artifact files and a ``manifest.json`` that
records the key, the inputs that made it, each file's SHA-256 and the library versions. An
entry is written in a temporary directory and renamed into place, so a reader never sees a
half-written one, and its digests are checked on every hit, so a damaged one is recomputed.
"""

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib

__all__ = ["ArtifactStore", "Entry", "digest_file", "hash_inputs"]

logger = logging.getLogger(__name__)

_MANIFEST = "manifest.json"

# Bump a stage's version when its code changes what it produces: old entries stop matching.
STAGE_VERSIONS = {
    "export": 1,
    "calibration": 1,
    "quantize": 1,
    "benchmark": 1,
    "evaluate": 1,
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One stage result in the store."""

    stage: str  # export, calibration, quantize, benchmark or evaluate
    key: str  # hash of the inputs
    path: Path  # the entry directory
    digest: str  # hash of the artifact files' digests: what downstream keys use
    meta: dict[str, Any]  # small JSON results the stage returned
    status: str  # "computed" in this run or "cached"
    seconds: float  # time spent in this run (lookup and check for a hit)

    def file(self, name: str) -> Path:
        """Path of one artifact file of this entry."""
        return self.path / name


def digest_file(path: Path) -> str:
    """SHA-256 of a file's content, read in chunks."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def hash_inputs(stage: str, inputs: dict[str, Any]) -> str:
    """The key of a stage result: a hash of its stage version and its inputs."""
    return joblib.hash({"stage": stage, "version": STAGE_VERSIONS[stage], "inputs": inputs})


class ArtifactStore:
    """The store under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def fetch_or_compute(
        self,
        stage: str,
        inputs: dict[str, Any],
        compute: Callable[[Path], dict[str, Any]],
        force: bool = False,
    ) -> Entry:
        """Return the stage result for these inputs, computing it when no sound entry exists.

        Args:
            stage: The stage name, one of ``STAGE_VERSIONS``.
            inputs: Everything the result depends on, JSON-able.
            compute: Writes the artifact files into the directory it gets and returns small
                JSON results (``meta``).
            force: Recompute even when a sound entry exists.

        Returns:
            The entry, with ``status`` saying whether it was computed now.
        """
        start = time.perf_counter()
        key = hash_inputs(stage, inputs)
        entry_dir = self.root / stage / key

        # A first look without the lock keeps a hit cheap; the second look under the lock
        # reuses what a concurrent run has just finished.
        entry = None if force else self._load_sound(stage, key, entry_dir)
        if entry is None:
            with self._lock(stage, key):
                entry = None if force else self._load_sound(stage, key, entry_dir)
                if entry is None:
                    self._compute(stage, key, inputs, compute, entry_dir)
                    entry = self._load_sound(stage, key, entry_dir)
                    entry = dataclasses.replace(entry, status="computed")
        if entry is None:
            raise RuntimeError(f"store entry {entry_dir} failed its check right after writing")
        return dataclasses.replace(entry, seconds=time.perf_counter() - start)

    def entries(self) -> Iterator[tuple[str, str, int]]:
        """Yield ``(stage, key, bytes)`` for every entry in the store."""
        for stage in sorted(STAGE_VERSIONS):
            stage_dir = self.root / stage
            if not stage_dir.is_dir():
                continue
            for entry_dir in sorted(stage_dir.iterdir()):
                if (entry_dir / _MANIFEST).is_file():
                    size = sum(p.stat().st_size for p in entry_dir.iterdir() if p.is_file())
                    yield stage, entry_dir.name, size

    def clear(self) -> None:
        """Remove every entry."""
        for stage in STAGE_VERSIONS:
            shutil.rmtree(self.root / stage, ignore_errors=True)

    def _compute(
        self,
        stage: str,
        key: str,
        inputs: dict[str, Any],
        compute: Callable[[Path], dict[str, Any]],
        entry_dir: Path,
    ) -> None:
        tmp_dir = entry_dir.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp_dir.mkdir(parents=True)
        try:
            start = time.perf_counter()
            meta = compute(tmp_dir)
            files = {
                p.name: {"sha256": digest_file(p), "bytes": p.stat().st_size}
                for p in sorted(tmp_dir.iterdir())
                if p.is_file()
            }
            manifest = {
                "stage": stage,
                "key": key,
                "inputs": inputs,
                "files": files,
                "digest": joblib.hash(files),
                "meta": meta,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "compute_seconds": round(time.perf_counter() - start, 3),
            }
            _write_json_synced(tmp_dir / _MANIFEST, manifest)

            # A damaged entry under the same key goes first; the rename is the commit point.
            if entry_dir.exists():
                shutil.rmtree(entry_dir)
            os.rename(tmp_dir, entry_dir)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    def _load_sound(self, stage: str, key: str, entry_dir: Path) -> Entry | None:
        manifest_path = entry_dir / _MANIFEST
        if not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
            damaged = [
                name
                for name, info in files.items()
                if not (entry_dir / name).is_file() or digest_file(entry_dir / name) != info["sha256"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("Store entry %s has an unreadable manifest (%s): recomputing", entry_dir, error)
            return None
        if damaged or manifest.get("key") != key or manifest.get("digest") != joblib.hash(files):
            logger.warning("Store entry %s is damaged (%s): recomputing", entry_dir, damaged or "manifest")
            return None
        return Entry(stage, key, entry_dir, manifest["digest"], manifest["meta"], "cached", 0.0)

    @contextmanager
    def _lock(self, stage: str, key: str) -> Iterator[None]:
        lock_path = self.root / stage / f".{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def _write_json_synced(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w") as stream:
        json.dump(data, stream, indent=2, default=str)
        stream.flush()
        os.fsync(stream.fileno())
