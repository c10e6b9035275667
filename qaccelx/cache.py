"""Look into the artifact store and empty it.

    python -m qaccelx.cache list [--cache_dir DIR]
    python -m qaccelx.cache clear [--cache_dir DIR] [--stage STAGE ...]

The store is found as a run finds it: ``--cache_dir``, then ``QACCELX_CACHE_DIR``, then
``$XDG_CACHE_HOME/qaccelx``. To recompute instead of deleting, run with ``--recompute``.
"""

import argparse
import sys
from collections.abc import Sequence

from qaccelx.config import resolve_cache_dir
from qaccelx.store import STAGE_VERSIONS, ArtifactStore, StoredEntry

__all__ = ["build_parser", "format_entries", "format_size", "main"]

# Characters of an entry's key shown by `list`: enough to tell entries apart by eye.
_KEY_CHARS = 12


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m qaccelx.cache``."""
    parser = argparse.ArgumentParser(
        prog="python -m qaccelx.cache",
        description="List or clear QAccelX's artifact store (exported, quantized and measured "
        "results, keyed by what they were made from).",
    )
    parser.add_argument("command", choices=("list", "clear"), help="what to do with the store")
    parser.add_argument(
        "--cache_dir",
        default=None,
        help="the store (default: $QACCELX_CACHE_DIR, else $XDG_CACHE_HOME/qaccelx)",
    )
    parser.add_argument(
        "--stage",
        action="append",
        choices=tuple(STAGE_VERSIONS),
        help="clear only this stage's entries (repeatable); default: every stage",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (1 when a busy entry could not be cleared)."""
    args = build_parser().parse_args(argv)
    store = ArtifactStore(resolve_cache_dir(args.cache_dir))
    if args.command == "list":
        print(format_entries(list(store.entries()), str(store.root)))
        return 0

    freed, busy = store.clear(args.stage)
    print(f"Freed {format_size(freed)} in {store.root}")
    for entry_dir in busy:
        print(f"Skipped {entry_dir}: a run is computing it; clear again later", file=sys.stderr)
    return 1 if busy else 0


def format_entries(entries: list[StoredEntry], root: str) -> str:
    """A table of entries, one a line, and their total.

    Args:
        entries: The store's entries.
        root: The store's folder, named in the last line.
    """
    header = f"{'stage':<21} {'key':<{_KEY_CHARS}} {'size':>9}  {'created':<24} subject"
    lines = [header, "-" * len(header)]
    for entry in entries:
        lines.append(
            f"{entry.stage:<21} {entry.key[:_KEY_CHARS]} {format_size(entry.size):>9}  "
            f"{entry.created:<24} {entry.subject}"
        )
    total = sum(entry.size for entry in entries)
    lines.append(f"{len(entries)} entries, {format_size(total)} in {root}")
    return "\n".join(lines)


def format_size(num_bytes: int) -> str:
    """A byte count for people: ``512 B``, ``12.3 kB``, ``1.5 GB`` (powers of 1000)."""
    units = ("B", "kB", "MB", "GB", "TB")
    size, unit = float(num_bytes), 0
    while size >= 1000 and unit < len(units) - 1:
        size /= 1000
        unit += 1
    return f"{num_bytes} B" if unit == 0 else f"{size:.1f} {units[unit]}"


if __name__ == "__main__":
    sys.exit(main())
