"""Guardrails' configuration (docs/guardrails.md): on a tool mapping and on a virtual server.

Kept apart from _config.py, which re-exports these models; what they mean at run time is
_guardrails.py's.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["GuardrailsConfig", "InputRule", "OutputRule"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc}), found {value!r}") from None
    return value


class InputRule(_Strict):
    """A rule on a call's arguments: `deny` (a regex no argument value may match; `argument`: only
    that one), `max_bytes` (the arguments' JSON size), or `hook` (a Python function: an entry point
    of group slicewire.guardrails, or `module:function`; `budget_ms` to decide). `message` replaces
    what the model is told."""

    name: str | None = None
    deny: str | None = None
    argument: str | None = None
    max_bytes: int | None = Field(default=None, gt=0)
    hook: str | None = None
    budget_ms: float = Field(default=50.0, gt=0)
    message: str | None = None

    _deny = field_validator("deny")(lambda cls, v: _regex(v))

    @field_validator("hook")
    @classmethod
    def _loads(cls, value: str | None) -> str | None:
        if value is not None:
            from ._guardrails import HookError, load_hook

            try:
                load_hook(value)
            except HookError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one(self) -> InputRule:
        if sum(v is not None for v in (self.deny, self.max_bytes, self.hook)) != 1:
            raise ValueError("an input rule has one of deny (a regex), max_bytes or hook")
        return self


class OutputRule(_Strict):
    """A rule on a tool's result: `detect` (a built-in detector) or `regex`, with `action` redact or
    block; or `max_result_bytes` with action truncate."""

    name: str | None = None
    detect: Literal["email", "card_number", "us_ssn", "api_key"] | None = None
    regex: str | None = None
    max_result_bytes: int | None = Field(default=None, gt=0)
    action: Literal["redact", "block", "truncate"] | None = None

    _regex = field_validator("regex")(lambda cls, v: _regex(v))

    @model_validator(mode="after")
    def _one(self) -> OutputRule:
        given = [k for k in ("detect", "regex", "max_result_bytes") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an output rule has one of detect, regex or max_result_bytes")
        if self.max_result_bytes is not None:
            if self.action not in (None, "truncate"):
                raise ValueError(f"max_result_bytes truncates; action must be truncate, found {self.action!r}")
        elif self.action == "truncate":
            raise ValueError("action truncate goes with max_result_bytes; detect and regex redact or block")
        return self

    @property
    def effective_action(self) -> str:
        """The action, its default filled in: truncate for max_result_bytes, else redact."""
        return self.action or ("truncate" if self.max_result_bytes is not None else "redact")


class GuardrailsConfig(_Strict):
    """How a tool may be used (docs/guardrails.md). On a tool mapping: all of it; on a virtual server:
    input_rules and output_rules, for every tool after the tool's own."""

    pin: dict[str, Any] = {}
    narrow: dict[str, dict[str, Any]] = {}
    input_rules: list[InputRule] = []
    output_rules: list[OutputRule] = []
    # The calling user approves each call first (elicitation): always, for tools whose annotations say
    # destructiveHint (and not readOnlyHint), or never. A tool's own setting wins over its server's.
    approval: Literal["required", "destructive", "never"] | None = None

    @field_validator("narrow")
    @classmethod
    def _schemas(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from jsonschema import Draft202012Validator, SchemaError

        for name, keywords in value.items():
            try:
                Draft202012Validator.check_schema(keywords)
            except SchemaError as exc:
                raise ValueError(f"narrow.{name}: not a JSON Schema ({exc.message})") from None
        return value
