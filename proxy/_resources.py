"""Resource routing: which backend URI an exposed URI reads, and which exposed URI a backend's is.

Pure. A virtual server's `resource_mappings` name resources three ways — one URI, every URI under a
prefix, the URIs of an RFC 6570 template — each optionally renamed (`expose_as`) so that two
backends' URIs never collide. `ResourceRouter` answers both directions:

    >>> router = ResourceRouter.build([("/fs", "prefix", "file:///data/", "files://", 0)])
    >>> router.inbound("files://a.txt")
    ResourceRoute(backend='/fs', uri='file:///data/a.txt', exposed='files://a.txt', mapping=0)
    >>> router.outbound("/fs", "file:///data/b.txt")
    'files://b.txt'

A template and its renamed form have the same expressions in the same order, so a URI is moved
from one to the other by carrying each expression's matched text across unchanged — no decoding
and re-encoding of values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LinkShaper", "ResourceRoute", "ResourceRouter", "TemplateError", "UriTemplate", "expose_blocks"]

Kind = Literal["uri", "prefix", "template"]

_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_VARNAME = re.compile(r"^[A-Za-z0-9_.%]+(?::[0-9]{1,4}|\*)?$")
# What each RFC 6570 operator's expansion can look like (the value text it matches, operator included).
_OPERATOR_PATTERN = {
    "": r"[^/?#&]*",
    "+": r"[^?#]*",
    "#": r"(?:#.*)?",
    ".": r"(?:\.[^/?#.]*)*",
    "/": r"(?:/[^/?#]*)*",
    ";": r"(?:;[^/?#;]*)*",
    "?": r"(?:\?[^#]*)?",
    "&": r"(?:&[^#]*)?",
}


class TemplateError(ValueError):
    """Not an RFC 6570 URI template Slicewire can route."""


class UriTemplate:
    """An RFC 6570 template, for matching URIs against it and moving their values to a twin template."""

    __slots__ = ("_literals", "expressions", "pattern", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        literals: list[str] = []
        expressions: list[str] = []
        pattern = []
        position = 0
        for match in _EXPRESSION.finditer(template):
            literal = template[position : match.start()]
            if "{" in literal or "}" in literal:
                raise TemplateError(f"unbalanced braces in URI template {template!r}")
            literals.append(literal)
            pattern.append(re.escape(literal))
            expression = match.group(1)
            operator = expression[:1] if expression[:1] in _OPERATOR_PATTERN and expression[:1] else ""
            names = expression[len(operator) :].split(",")
            if not expression or not all(_VARNAME.match(name) for name in names):
                raise TemplateError(f"URI template {template!r}: {{{expression}}} is not a valid expression")
            expressions.append(expression)
            pattern.append(f"({_OPERATOR_PATTERN[operator]})")
            position = match.end()
        tail = template[position:]
        if "{" in tail or "}" in tail:
            raise TemplateError(f"unbalanced braces in URI template {template!r}")
        literals.append(tail)
        pattern.append(re.escape(tail))
        self.expressions = tuple(expressions)
        self._literals = tuple(literals)
        self.pattern = re.compile("".join(pattern), re.DOTALL)

    def match(self, uri: str) -> tuple[str, ...] | None:
        """Each expression's text in `uri`, or None when `uri` is not an expansion of this template."""
        found = self.pattern.fullmatch(uri)
        return found.groups() if found is not None else None

    def fill(self, values: tuple[str, ...]) -> str:
        """The URI with each expression replaced by the text matched for it (by a twin template)."""
        parts = [self._literals[0]]
        for value, literal in zip(values, self._literals[1:], strict=True):
            parts += (value, literal)
        return "".join(parts)

    def __repr__(self) -> str:
        return f"UriTemplate({self.template!r})"


@dataclass(frozen=True, slots=True)
class ResourceRoute:
    """Where an exposed resource URI is read: the backend, its URI there, and the mapping that says so."""

    backend: str
    uri: str
    exposed: str
    mapping: int


@dataclass(frozen=True, slots=True)
class _Rule:
    backend: str
    kind: Kind
    backend_form: str
    exposed_form: str
    mapping: int
    backend_template: UriTemplate | None = None
    exposed_template: UriTemplate | None = None

    def to_backend(self, uri: str) -> str | None:
        return self._move(uri, self.exposed_form, self.backend_form, self.exposed_template, self.backend_template)

    def to_exposed(self, uri: str) -> str | None:
        return self._move(uri, self.backend_form, self.exposed_form, self.backend_template, self.exposed_template)

    def _move(
        self,
        uri: str,
        source: str,
        target: str,
        source_template: UriTemplate | None,
        target_template: UriTemplate | None,
    ) -> str | None:
        if self.kind == "uri":
            return target if uri == source else None
        if self.kind == "prefix":
            return target + uri[len(source) :] if uri.startswith(source) else None
        assert source_template is not None and target_template is not None
        values = source_template.match(uri)
        return target_template.fill(values) if values is not None else None


class ResourceRouter:
    """Both directions of one virtual server's resource mappings. An exact URI wins; otherwise the
    first prefix or template mapping, in config order, that matches."""

    def __init__(self, rules: list[_Rule]) -> None:
        self._exact = {r.exposed_form: r for r in rules if r.kind == "uri"}
        self._exact_back = {(r.backend, r.backend_form): r for r in rules if r.kind == "uri"}
        self._others = [r for r in rules if r.kind != "uri"]
        self.templates = tuple(r for r in rules if r.kind == "template")
        self.rules = tuple(rules)

    @classmethod
    def build(cls, mappings: Iterable[tuple[str, Kind, str, str, int]]) -> ResourceRouter:
        """From (backend, kind, backend form, exposed form, mapping index) tuples."""
        rules = []
        for backend, kind, backend_form, exposed_form, index in mappings:
            if kind == "template":
                rules.append(_Rule(backend, kind, backend_form, exposed_form, index,
                                   UriTemplate(backend_form), UriTemplate(exposed_form)))  # fmt: skip
            else:
                rules.append(_Rule(backend, kind, backend_form, exposed_form, index))
        return cls(rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def inbound(self, uri: str) -> ResourceRoute | None:
        """The route of a URI a client asks for, or None when it is not in the slice."""
        rule = self._exact.get(uri)
        if rule is not None:
            return ResourceRoute(rule.backend, rule.backend_form, uri, rule.mapping)
        for rule in self._others:
            target = rule.to_backend(uri)
            if target is not None:
                return ResourceRoute(rule.backend, target, uri, rule.mapping)
        return None

    def outbound(self, backend: str, uri: str) -> str | None:
        """The URI the client knows for a backend's URI, or None when the slice does not expose it."""
        rule = self._exact_back.get((backend, uri))
        if rule is not None:
            return rule.exposed_form
        for rule in self._others:
            if rule.backend == backend:
                exposed = rule.to_exposed(uri)
                if exposed is not None:
                    return exposed
        return None

    def outbound_template(self, backend: str, template: str) -> tuple[str, int] | None:
        """The exposed form of a backend's resource template (and its mapping), if the slice has it."""
        for rule in self._others:
            if rule.backend != backend:
                continue
            if rule.kind == "template" and rule.backend_form == template:
                return rule.exposed_form, rule.mapping
            if rule.kind == "prefix" and template.startswith(rule.backend_form):
                return rule.exposed_form + template[len(rule.backend_form) :], rule.mapping
        return None

    def inbound_template(self, template: str) -> tuple[str, str] | None:
        """(backend, backend template) of an exposed template a client names, e.g. in completion/complete."""
        for rule in self._others:
            if rule.kind == "template" and rule.exposed_form == template:
                return rule.backend, rule.backend_form
            if rule.kind == "prefix" and template.startswith(rule.exposed_form):
                return rule.backend, rule.backend_form + template[len(rule.exposed_form) :]
        return None


class LinkShaper:
    """A tool result from one backend with its content's resource URIs as the client knows them (one
    per slice and backend, kept by the slice: the hot path makes none)."""

    __slots__ = ("backend", "router")
    # Every result with a resource link or embedded resource contains these bytes ("resource_link", "resource").
    marker = b'"resource'

    def __init__(self, router: ResourceRouter, backend: str) -> None:
        self.router, self.backend = router, backend

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        content = result.get("content")
        if not isinstance(content, list):
            return result
        blocks = expose_blocks(self.router, self.backend, content)
        return result if blocks is content else {**result, "content": blocks}


def expose_blocks(router: ResourceRouter, backend: str, blocks: list[Any]) -> list[Any]:
    """Content blocks (of a tool result, a prompt message) with resource URIs as the client knows them.

    A `resource_link` the slice does not expose is left out: the client could not read it, and it names
    a backend's URI. An embedded `resource` carries its content — it is part of the answer — so it is
    kept, renamed when the slice maps its URI. Returns `blocks` itself when nothing changes."""
    shaped: list[Any] | None = None
    for index, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        replacement = block
        if kind == "resource_link":
            uri = block.get("uri")
            exposed = router.outbound(backend, uri) if isinstance(uri, str) else None
            replacement = None if exposed is None else block if exposed == uri else {**block, "uri": exposed}
        elif kind == "resource":
            resource = block.get("resource")
            uri = resource.get("uri") if isinstance(resource, dict) else None
            exposed = router.outbound(backend, uri) if isinstance(uri, str) else None
            if exposed is not None and exposed != uri:
                replacement = {**block, "resource": {**resource, "uri": exposed}}
        if replacement is not block and shaped is None:
            shaped = blocks[:index]
        if shaped is not None and replacement is not None:
            shaped.append(replacement)
    return blocks if shaped is None else shaped
