"""A backend's results as the client knows them: the slice's resource URIs (links, contents, prompt
messages). Each shaper has a `marker`: bytes every result it must rewrite contains, so that a result
without them is passed as it is without a walk. (Task ids are shaped in `_taskcalls.py`.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._call import Call, Shaper
from ._resources import ResourceRoute, ResourceRouter, expose_blocks
from ._upstream import Backend

__all__ = [
    "ContentsShaper",
    "PromptShaper",
    "contents_shaper",
    "prompt_shaper",
    "tool_result_shaper",
]


# --- exposed URIs in results -----------------------------------------------------------------------


def tool_result_shaper(call: Call, backend: Backend) -> Shaper:
    """Tool results name resources by the backend's URIs; the client knows the slice's (and a link to
    a resource outside the slice is left out)."""
    return call.server.slice.links(backend.path)


def prompt_shaper(call: Call, backend: str) -> PromptShaper:
    return PromptShaper(call.server.slice.router, backend)


class PromptShaper:
    """A prompts/get answer with its messages' resource URIs as the client knows them."""

    marker = b'"resource'

    def __init__(self, router: ResourceRouter, backend: str) -> None:
        self.router, self.backend = router, backend

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        return _each(result, "messages", self._message)

    def _message(self, message: Any) -> Any:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, dict):
            return message
        blocks = expose_blocks(self.router, self.backend, [content])
        return {**message, "content": blocks[0]} if blocks else None  # None: a link outside the slice


def _each(result: dict[str, Any], key: str, shape: Callable[[Any], Any]) -> dict[str, Any]:
    """`result` with each item of its `key` list shaped (an item shaped to None is left out)."""
    items = result.get(key)
    if not isinstance(items, list):
        return result
    return {**result, key: [shaped for item in items if (shaped := shape(item)) is not None]}


def contents_shaper(call: Call, route: ResourceRoute) -> ContentsShaper:
    return ContentsShaper(call.server.slice.router, route)


class ContentsShaper:
    """A resources/read answer as the client knows it: its contents' URIs exposed, and the backend's
    URI kept out of an error (a backend's "Resource <uri> not found" names its own)."""

    marker = None

    def __init__(self, router: ResourceRouter, route: ResourceRoute) -> None:
        self.router, self.route = router, route

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        return _each(result, "contents", self._item)

    def _item(self, item: Any) -> Any:
        route = self.route
        uri = item.get("uri") if isinstance(item, dict) else None
        if not isinstance(uri, str):
            return item
        exposed = route.exposed if uri == route.uri else self.router.outbound(route.backend, uri)
        return {**item, "uri": exposed if exposed is not None else route.exposed}

    def error(self, message: str, data: Any) -> tuple[str, Any]:
        route = self.route
        message = message.replace(route.uri, route.exposed)
        if isinstance(data, dict) and data.get("uri") == route.uri:
            data = {**data, "uri": route.exposed}
        return message, data
