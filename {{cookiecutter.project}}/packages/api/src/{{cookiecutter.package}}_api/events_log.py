"""The durable feedback events log: JSON lines, appended whole and synced before the answer.

Each request's accepted events go out as one `os.write` on a descriptor opened with `O_APPEND`,
under a process-wide lock, then `os.fsync`: once `POST /v1/events` has answered 202, the events
are on disk, so a shutdown or a crash cannot lose them. With several gunicorn workers (processes)
every worker writes whole lines with one `write` call; on Linux, appends made by one `write` to
a file on a local filesystem are not interleaved with other writers' (writes of less than
PIPE_BUF bytes are atomic everywhere POSIX applies), so lines from different workers never mix.
Monitoring reads the file line by line.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()  # one writer at a time in this process, whatever the log path


class EventsLogError(Exception):
    """The events could not be written (and none of them were)."""


def append_events(path: str | os.PathLike[str], events: Sequence[dict[str, Any]]) -> int:
    """Append `events` as JSON lines with one write, then fsync; return how many were written."""
    data = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in events).encode()
    target = Path(path)
    with _LOCK:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise EventsLogError(f"cannot open the events log {str(target)!r}: {error}") from error
        try:
            written = os.write(fd, data)
            if written != len(data):
                # Only a full disk does this to a local regular file; the partial last line is
                # then not valid JSON, and readers skip lines that do not parse.
                raise EventsLogError(f"short write to the events log ({written}/{len(data)} bytes)")
            os.fsync(fd)
        except OSError as error:
            raise EventsLogError(f"cannot write the events log {str(target)!r}: {error}") from error
        finally:
            os.close(fd)
    return len(events)
