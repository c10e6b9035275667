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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib

__all__ = ["STAGE_VERSIONS", "ArtifactStore", "Entry", "StoredEntry", "digest_file", "hash_inputs"]

logger = logging.getLogger(__name__)

_MANIFEST = "manifest.json"

# Bump a stage's version when its code changes what it produces: old entries stop matching.
# Export and quantize are at 2 since their IR node names became canonical (byte-stable IR).
STAGE_VERSIONS = {
    "export": 2,
    "calibration": 1,
    "quantize": 2,
    "evaluate": 2,
    "benchmark-latency": 1,
    "benchmark-throughput": 1,
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One stage result in the store."""

    stage: str  # one of STAGE_VERSIONS
    key: str  # hash of the inputs
    path: Path  # the entry directory
    digest: str  # hash of the artifact files' digests: what downstream keys use
    meta: dict[str, Any]  # small JSON results the stage returned
    status: str  # "computed" in this run or "cached"
    seconds: float  # time spent in this run (lookup and check for a hit)

    def file(self, name: str) -> Path:
        """Path of one artifact file of this entry."""
        return self.path / name


@dataclasses.dataclass(frozen=True)
class StoredEntry:
    """One entry as ``qaccelx.cache list`` shows it, read without checking its digests."""

    stage: str  # one of STAGE_VERSIONS
    key: str  # hash of the inputs
    path: Path  # the entry directory
    size: int  # bytes of its files, manifest included
    created: str  # ISO time it was written
    subject: str  # the model (export) or the row (evaluate, benchmarks); empty otherwise


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

        Raises:
            RuntimeError: the entry just written cannot be read back.
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
                    entry = self._compute(stage, key, inputs, compute, entry_dir)
        return dataclasses.replace(entry, seconds=time.perf_counter() - start)

    def entries(self) -> Iterator[StoredEntry]:
        """Yield every finished entry, by stage and key; half-written ones are left out."""
        for stage in STAGE_VERSIONS:
            stage_dir = self.root / stage
            if not stage_dir.is_dir():
                continue
            for entry_dir in sorted(stage_dir.iterdir()):
                manifest = _read_manifest(entry_dir)
                if manifest is not None and not entry_dir.name.startswith("."):
                    yield _stored_entry(stage, entry_dir, manifest)

    def clear(self, stages: Iterable[str] | None = None) -> tuple[int, list[Path]]:
        """Remove the entries of some stages (all by default), with any half-written ones.

        An entry that a running computation holds is left alone rather than waited for.

        Args:
            stages: Stage names to clear; None clears every stage.

        Returns:
            Bytes freed and the entry directories skipped because a run held them.
        """
        freed, busy = 0, []
        for stage in STAGE_VERSIONS if stages is None else stages:
            stage_dir = self.root / stage
            if not stage_dir.is_dir():
                continue
            for entry_dir in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
                size = _tree_size(entry_dir)
                if self._remove_unless_locked(stage, _entry_key(entry_dir), entry_dir):
                    freed += size
                else:
                    busy.append(entry_dir)
        return freed, busy

    def _compute(
        self,
        stage: str,
        key: str,
        inputs: dict[str, Any],
        compute: Callable[[Path], dict[str, Any]],
        entry_dir: Path,
    ) -> Entry:
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
            manifest["seal"] = _seal(manifest)
            _write_json_synced(tmp_dir / _MANIFEST, manifest)

            # A damaged entry under the same key goes first; the rename is the commit point.
            if entry_dir.exists():
                shutil.rmtree(entry_dir)
            os.rename(tmp_dir, entry_dir)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)

        # The files were digested a moment ago; read back only the manifest, so the entry's
        # meta is the JSON a later hit will see.
        written = _read_manifest(entry_dir)
        if written is None:
            raise RuntimeError(f"store entry {entry_dir} is unreadable right after writing")
        return Entry(stage, key, entry_dir, written["digest"], written["meta"], "computed", 0.0)

    def _load_sound(self, stage: str, key: str, entry_dir: Path) -> Entry | None:
        manifest_path = entry_dir / _MANIFEST
        if not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
            damaged = _damaged_files(entry_dir, files)
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning(
                "Store entry %s has an unreadable manifest (%s): recomputing", entry_dir, error
            )
            return None
        intact = (
            manifest.get("key") == key
            and manifest.get("digest") == joblib.hash(files)
            and manifest.get("seal") == _seal(manifest)  # nothing in it edited since
        )
        if damaged or not intact:
            logger.warning(
                "Store entry %s is damaged (%s): recomputing", entry_dir, damaged or "manifest"
            )
            return None
        return Entry(stage, key, entry_dir, manifest["digest"], manifest["meta"], "cached", 0.0)

    def _remove_unless_locked(self, stage: str, key: str, entry_dir: Path) -> bool:
        with open(self._lock_path(stage, key), "w") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            try:
                shutil.rmtree(entry_dir, ignore_errors=True)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return True

    def _lock_path(self, stage: str, key: str) -> Path:
        # Lock files stay when entries go: deleting one another run may hold would let a
        # third run lock a fresh file and compute the same entry alongside it.
        lock_path = self.root / stage / f".{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        return lock_path

    @contextmanager
    def _lock(self, stage: str, key: str) -> Iterator[None]:
        with open(self._lock_path(stage, key), "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def _damaged_files(entry_dir: Path, files: dict[str, dict[str, Any]]) -> list[str]:
    # Missing, truncated or altered: any file whose content no longer has its recorded digest.
    return [
        name
        for name, info in files.items()
        if not (entry_dir / name).is_file() or digest_file(entry_dir / name) != info["sha256"]
    ]


def _entry_key(entry_dir: Path) -> str:
    # A half-written entry is named .tmp-<key>-<suffix> and guarded by <key>'s lock.
    if entry_dir.name.startswith(".tmp-"):
        return entry_dir.name.split("-")[1]
    return entry_dir.name


def _read_manifest(entry_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((entry_dir / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _stored_entry(stage: str, entry_dir: Path, manifest: dict[str, Any]) -> StoredEntry:
    inputs = manifest.get("inputs") or {}
    subject = inputs.get("model") or inputs.get("variant") or ""
    created = manifest.get("created", "")
    return StoredEntry(stage, entry_dir.name, entry_dir, _tree_size(entry_dir), created, subject)


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _seal(manifest: dict[str, Any]) -> str:
    # A hash of everything a hit trusts, meta included: a hand-edited result is recomputed.
    # Hashed as the JSON it is stored as, so the value read back hashes the same.
    trusted = {name: manifest.get(name) for name in ("key", "inputs", "files", "digest", "meta")}
    stored = json.loads(json.dumps(trusted, default=str))
    return hashlib.sha256(json.dumps(stored, sort_keys=True).encode()).hexdigest()


def _write_json_synced(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w") as stream:
        json.dump(data, stream, indent=2, default=str)
        stream.flush()
        os.fsync(stream.fileno())
