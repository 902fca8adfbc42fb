"""Checks on the directories hyperflux writes to, with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

from utils.errors import ConfigError


def ensure_writable_dir(path: Path, setting: str = "HYPERFLUX_DATA_DIR") -> None:
    """Create `path` if needed and prove a file can be written there; `ConfigError` if not.

    Run before anything is collected: the spool, the registry and the stream state all live
    there, and finding out later would lose data."""
    probe = path / f".write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"the data dir {path} is not writable ({reason}): point {setting} at a directory "
            "this user can write, or fix its permissions"
        ) from None
