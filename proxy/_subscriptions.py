"""Resource subscriptions: which clients want `notifications/resources/updated` for which backend URI.

The gateway holds one session per backend, so it subscribes there once per URI, for the first client
that asks, and unsubscribes when the last one leaves (unsubscribes, or its session or listen stream
ends). A backend's update reaches every subscriber under the URI its virtual server exposes.

    >>> subs = Subscriptions()
    >>> subs.add("/fs", "file:///a", "session-1", deliver)    # True: subscribe at /fs
    >>> subs.updated("/fs", "file:///a")                      # deliver() called: 1
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

__all__ = ["Subscriptions"]

Key = tuple[str, str]  # (backend path, the backend's URI)


class Subscriptions:
    def __init__(self) -> None:
        self._subscribers: dict[Key, dict[Hashable, Callable[[], None]]] = {}

    def add(self, backend: str, uri: str, subscriber: Hashable, deliver: Callable[[], None]) -> bool:
        """Register; True when this is the URI's first subscriber (the backend must be asked)."""
        subscribers = self._subscribers.setdefault((backend, uri), {})
        first = not subscribers
        subscribers[subscriber] = deliver
        return first

    def has(self, backend: str, uri: str, subscriber: Hashable) -> bool:
        return subscriber in self._subscribers.get((backend, uri), {})

    def remove(self, backend: str, uri: str, subscriber: Hashable) -> bool:
        """Unregister; True when it was the URI's last subscriber (the backend may be told)."""
        subscribers = self._subscribers.get((backend, uri))
        if subscribers is None or subscriber not in subscribers:
            return False
        del subscribers[subscriber]
        if subscribers:
            return False
        del self._subscribers[(backend, uri)]
        return True

    def drop(self, subscriber: Hashable) -> list[Key]:
        """Forget everything one subscriber (an ended session or stream) wanted; the URIs nobody else wants."""
        emptied = []
        for key in [k for k, subscribers in self._subscribers.items() if subscriber in subscribers]:
            if self.remove(*key, subscriber):
                emptied.append(key)
        return emptied

    def updated(self, backend: str, uri: str) -> int:
        """A backend said the resource changed: tell its subscribers. Returns how many were told."""
        subscribers = self._subscribers.get((backend, uri), {})
        for deliver in list(subscribers.values()):
            deliver()
        return len(subscribers)

    def count(self, backend: str, uri: str) -> int:
        return len(self._subscribers.get((backend, uri), {}))
