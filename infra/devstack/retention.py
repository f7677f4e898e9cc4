"""What the embedded AWS keeps while the stack runs, bounded.

A session of ``make dev`` can take tens of thousands of webhooks (``make soak``,
``make fuzz``). What moto keeps per message must then stay bounded, or the stack
grows until the machine kills it:

* **EventBridge archives.** moto appends every archived event to a list and never
  drops one (the template's archive keeps events 90 days by default). Here an
  archive keeps its newest :data:`ARCHIVE_KEEP_EVENTS`; a local replay replays those.
* **S3 objects.** moto keeps an object in memory up to 5 MB, then in a temporary
  file: a session storing raw payloads (fuzzed ones reach 450 KB) grew by their
  sum. Here objects are kept in memory up to :data:`S3_IN_MEMORY_BYTES`
  (``MOTO_S3_DEFAULT_KEY_BUFFER_SIZE``, unless it is set); the bytes served back
  are the same.
* **Memory arenas.** moto answers each request on a thread of its own, and glibc
  gives threads their own malloc arenas (up to 8 per CPU): memory freed in one is
  not reused by another, so the process held about a third more than it used.
  Two arenas (what ``MALLOC_ARENA_MAX=2`` sets) keep it close to what it uses.

DynamoDB's own bounds (transactions, stream records, query cost) are in
:mod:`devstack.isolation`.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import functools
import os
from typing import Any

ARCHIVE_KEEP_EVENTS = 1000
S3_IN_MEMORY_BYTES = 64 * 1024
ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def bound_retention() -> None:
    """Apply the bounds above (idempotent); before moto serves a request."""
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(S3_IN_MEMORY_BYTES))
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
