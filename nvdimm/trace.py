"""Per-machine trace of cross-subsystem events, built on structlog.

Each machine owns a :class:`Trace`. An event is a stable dotted name
(``pmem.write``, ``btt.remap``) plus key-values. Events are kept in a bounded
in-memory ring so a test, a tour or an experiment can query them afterwards, and
can be echoed as they happen through a structlog processor chain owned by this
trace (never by global structlog configuration).

Hot paths guard with the ``on`` attribute so a disabled trace costs one
attribute load and a branch::

    if trace.on:
        trace.emit("pmem.write", sector=s, len=n)
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import attrs
import structlog


@attrs.frozen(slots=True)
class Event:
    """One recorded event: sequence number, dotted name, fields."""

    seq: int
    name: str
    fields: dict[str, Any]

    @property
    def subsystem(self) -> str:
        return self.name.split(".", 1)[0]

    def render(self) -> str:
        kv = " ".join(f"{k}={_fmt(v)}" for k, v in self.fields.items())
        return f"{self.name} {kv}".rstrip()


def _fmt(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v >= 4096:
        return hex(v)
    return str(v)


@attrs.define(slots=True)
class Trace:
    """A machine's event recorder.

    ``on`` switches recording; ``echo`` (a stream) prints each event as it is
    emitted, rendered by structlog's key-value renderer. ``capacity`` bounds memory.
    """

    on: bool = True
    capacity: int = 100_000
    _events: deque[Event] = attrs.field(init=False)
    _seq: int = attrs.field(init=False, default=0)
    _logger: Any = attrs.field(init=False, default=None)
    _listeners: list[Callable[[Event], None]] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        self._events = deque(maxlen=self.capacity)

    def echo_to(self, stream: TextIO | None = sys.stderr) -> None:
        """Print each future event to ``stream`` (None stops echoing)."""
        if stream is None:
            self._logger = None
            return
        self._logger = structlog.wrap_logger(
            structlog.PrintLogger(stream),
            processors=[structlog.processors.KeyValueRenderer(
                key_order=["event"], drop_missing=True)],
            cache_logger_on_first_use=True,
        )

    def subscribe(self, fn: Callable[[Event], None]) -> None:
        """Call ``fn`` for every future event (used by tours and experiments)."""
        self._listeners.append(fn)

    def emit(self, name: str, **fields: Any) -> None:
        if not self.on:
            return
        self._seq += 1
        ev = Event(self._seq, name, fields)
        self._events.append(ev)
        if self._logger is not None:
            self._logger.info(name, **fields)
        for fn in self._listeners:
            fn(ev)

    def events(self, prefix: str | None = None) -> list[Event]:
        """Recorded events, oldest first; ``prefix`` filters by name (``"pmem."``)."""
        if prefix is None:
            return list(self._events)
        return [e for e in self._events if e.name.startswith(prefix)]

    def since(self, seq: int) -> Iterator[Event]:
        """Events with a sequence number greater than ``seq``."""
        return (e for e in self._events if e.seq > seq)

    @property
    def last_seq(self) -> int:
        return self._seq

    def clear(self) -> None:
        self._events.clear()
