"""The durable feedback events log: JSON lines, appended whole or not at all, synced before the
answer.

A request's accepted events go out as one append to a descriptor opened with `O_APPEND`, then
`os.fsync`: once `POST /v1/events` has answered 202, the events are on disk, so a shutdown or a
crash cannot lose them.

A failed append (a full disk, a file size limit, a failed fsync) leaves the log exactly as it was:
the file is truncated back to its length before the write, so no half line is left for the next
event to be glued onto and no event of a refused batch stays behind to be counted.

Several gunicorn workers (processes) append to the same file, so truncating to "the length
before my write" is only correct if nobody appended in between: otherwise it would cut off
another worker's acknowledged events. Every append therefore holds an exclusive advisory
`fcntl.flock` on the file from before it reads the length until after the sync or the rollback.
`flock` rather than POSIX record locks (`lockf`): a flock belongs to the open file description,
so it also excludes other threads of this process, and closing another descriptor of the file
does not drop it. It is advisory: only writers that take it (every API worker does) are kept
out, so nothing else should append to the log. A thread lock in front of it keeps this
process's threads from all waiting in the kernel.

If the file does not end with a newline when an append starts (a writer killed in the middle of
a write, a truncation that failed), the append starts with one, so a new line never continues a
torn one. Readers (`core.feedback.read_feedback`) skip what does not parse.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()  # one writer at a time in this process, whatever the log path


class EventsLogError(Exception):
    """The events could not be written. `stored` of them (the first ones, whole lines) are in the
    log nonetheless: 0 unless rolling back failed too."""

    def __init__(self, message: str, stored: int = 0) -> None:
        super().__init__(message)
        self.stored = stored


def append_events(path: str | os.PathLike[str], events: Sequence[dict[str, Any]]) -> int:
    """Append `events` as JSON lines and fsync, or raise `EventsLogError` with the log as it
    was; return how many were written."""
    data = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in events).encode()
    target = Path(path)
    with _LOCK:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise EventsLogError(f"cannot open the events log {str(target)!r}: {error}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by os.close
            _append_or_roll_back(fd, data, target)
        except OSError as error:  # flock itself
            raise EventsLogError(f"cannot lock the events log {str(target)!r}: {error}") from error
        finally:
            os.close(fd)
    return len(events)


def _append_or_roll_back(fd: int, data: bytes, target: Path) -> None:
    """Under the lock: append `data` whole and fsync, or truncate back to the length before."""
    before = os.fstat(fd).st_size
    if before and os.pread(fd, 1, before - 1) != b"\n":
        data = b"\n" + data  # never continue a torn line
    written = 0
    try:
        while written < len(data):
            # A short write means the disk (or the file size limit) is full: the next one says so.
            written += os.write(fd, data[written:])
        os.fsync(fd)
        return
    except OSError as error:
        problem = f"cannot write the events log {str(target)!r}: {error}"
    try:
        os.ftruncate(fd, before)
        os.fsync(fd)
    except OSError as error:
        # The rollback failed: say how many whole events are in the log (readers skip the rest).
        stored = max(data[:written].count(b"\n") - data.startswith(b"\n"), 0)
        raise EventsLogError(f"{problem}; rolling back failed too: {error}", stored) from error
    raise EventsLogError(problem)
