"""What the embedded AWS keeps while the stack runs, bounded.

A session of ``make dev`` can take tens of thousands of webhooks (``make soak``,
``make fuzz``). What moto keeps per message must then stay bounded, or the stack
grows until the machine kills it:

* **EventBridge archives.** moto appends every archived event to a list and never
  drops one (the template's archive keeps events 90 days by default). Here an
  archive keeps its newest :data:`ARCHIVE_KEEP_EVENTS`; a local replay replays those.
* **Memory arenas.** moto answers each request on a thread of its own, and glibc
  gives threads their own malloc arenas (up to 8 per CPU): memory freed in one is
  not reused by another, so the process held about a third more than it used.
  Two arenas (what ``MALLOC_ARENA_MAX=2`` sets) keep it close to what it uses.

DynamoDB's own bounds (transactions, stream records, query cost) are in
:mod:`devstack.isolation`; S3 objects are kept in memory only up to 64 KB
(:class:`devstack.stack.MotoServer`).
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import functools
from typing import Any

ARCHIVE_KEEP_EVENTS = 1000
ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def bound_retention() -> None:
    """Apply both bounds (idempotent)."""
    _bound_archives()
    _cap_malloc_arenas()


def _bound_archives() -> None:
    from moto.events.models import Archive

    if getattr(Archive.__init__, "__threadline_bounded__", False):
        return
    original = Archive.__init__

    @functools.wraps(original)
    def bounded_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.events = collections.deque(self.events, maxlen=ARCHIVE_KEEP_EVENTS)

    bounded_init.__threadline_bounded__ = True  # type: ignore[attr-defined]
    Archive.__init__ = bounded_init  # type: ignore[method-assign]


def _cap_malloc_arenas() -> None:
    """Two malloc arenas, on glibc; elsewhere (macOS, musl) nothing to do."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, ARENAS)
