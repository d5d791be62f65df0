"""Guardrails' pure parts: detectors, schemas shown to the agent, checks and result shaping."""

from __future__ import annotations

from typing import Any

from proxy._config import GuardrailsConfig
from proxy._guardrails import DETECTORS, ToolGuard, expose_schema


def found(detector: str, text: str) -> list[str]:
    pattern, accept, needle = DETECTORS[detector]
    assert needle is None or all(needle in m.group(0) for m in pattern.finditer(text))
    return [m.group(0) for m in pattern.finditer(text) if accept is None or accept(m.group(0))]


def test_detectors_find_what_they_name_and_not_look_alikes() -> None:
    assert found("email", "write to ada.l+x@mail.example.org, not @home") == ["ada.l+x@mail.example.org"]
    cards = "visa 4111 1111 1111 1111, amex 378282246310005, typo 4111 1111 1111 1112, order 2026-12-03-0001"
    assert found("card_number", cards) == ["4111 1111 1111 1111", "378282246310005"]  # Luhn-checked
    assert found("us_ssn", "ssn 123-45-6789; not 000-12-3456, 666-12-3456, 123-00-6789 or 1234-56-7890") == [
        "123-45-6789"]  # fmt: skip
    keys = ("AKIAIOSFODNN7EXAMPLE ghp_" + "a" * 36 + " sk-proj-" + "b" * 24 + " xoxb-1234567890-abc "
            "AIza" + "c" * 35 + " sk_live_" + "d" * 24)  # fmt: skip
    assert len(found("api_key", keys)) == 6
    assert found("api_key", "sk-short and ghp_tooshort") == []


def guard(**config: Any) -> ToolGuard:
    built = ToolGuard.build("t", GuardrailsConfig.model_validate(config), None)
    assert built is not None
    return built


def test_pins_and_narrowing_change_the_schema_the_agent_sees() -> None:
    schema = {"type": "object", "properties": {"repo": {"type": "string"}, "state": {"type": "string"}},
              "required": ["repo", "state"]}  # fmt: skip
    shown = expose_schema(schema, GuardrailsConfig(pin={"repo": "acme/docs"}, narrow={"state": {"enum": ["open"]}}))
    assert shown == {"type": "object", "properties": {"state": {"type": "string", "enum": ["open"]}},
                     "required": ["state"]}  # fmt: skip
    assert schema["required"] == ["repo", "state"]  # the backend's own is untouched
    g = guard(pin={"repo": "acme/docs"}, narrow={"limit": {"type": "integer", "maximum": 50}})
    arguments, verdicts, refused = g.check({"limit": 5})
    assert arguments == {"limit": 5, "repo": "acme/docs"} and refused is None and verdicts[0].action == "pin"
    assert g.check({"limit": 5, "repo": "acme/docs"})[2] is None  # the pinned value itself is fine
    refusal = g.check({"limit": 500})[2]
    assert refusal is not None and refusal.verdict.rule == "narrow limit" and "500 is greater than" in refusal.message


def test_input_rules_look_at_every_string_or_one_argument() -> None:
    g = guard(input_rules=[{"deny": "(?i)drop table"}, {"deny": "secret", "argument": "note", "name": "no-secret"}])
    assert g.check({"q": {"nested": ["x", "DROP TABLE users"]}})[2] is not None  # any depth
    assert g.check({"q": "secret"})[2] is None  # the second rule looks at `note` only
    refused = g.check({"note": "a secret"})[2]
    assert refused is not None and refused.data == {
        "guardrail": "no-secret",
        "reason": "argument 'note' matches 'secret'",
    }


def test_output_rules_redact_block_and_truncate() -> None:
    g = guard(output_rules=[{"detect": "email"}, {"regex": "TOKEN-[0-9]+", "name": "tokens", "action": "block"}])
    result = {"content": [{"type": "text", "text": "mail ada@example.com"},
                          {"type": "resource", "resource": {"uri": "x://1", "text": "cc bob@example.com"}}],
              "structuredContent": {"who": ["ada@example.com"]}}  # fmt: skip
    shaped, verdicts = g.shape_result(result, 0)
    assert shaped["content"][0]["text"] == "mail [REDACTED:email]"
    assert shaped["content"][1]["resource"]["text"] == "cc [REDACTED:email]"
    assert shaped["structuredContent"] == {"who": ["[REDACTED:email]"]}
    assert [(v.rule, v.action, v.detail) for v in verdicts] == [("email", "redact", "3 match(es)")]
    blocked, verdicts = g.shape_result({"content": [{"type": "text", "text": "TOKEN-42"}]}, 0)
    assert blocked["isError"] is True and "structuredContent" not in blocked and verdicts[-1].action == "block"
    short = guard(output_rules=[{"max_result_bytes": 10}])
    cut, verdicts = short.shape_result({"content": [{"type": "text", "text": "é" * 20}],
                                        "structuredContent": {"result": "é" * 20}}, 200)  # fmt: skip
    assert cut["content"][0]["text"] == "é" * 5 and cut["content"][-1]["text"].startswith("[truncated")
    assert cut["structuredContent"] == {"result": "é" * 5}
    assert verdicts[0].action == "truncate"
    assert short.shape_result({"content": []}, 5) == ({"content": []}, [])  # under the limit: untouched


def test_hooks_fail_closed_and_the_shipped_ssrf_hook() -> None:
    import asyncio

    from proxy.guardrails import Allow, CallContext, Deny, no_private_urls

    ctx = CallContext("/v", "fetch", "/web", "fetch", "ada", "modern")
    for url in ("http://127.0.0.1:8080/x", "https://10.1.2.3/", "http://[::1]/", "http://localhost/admin",
                "http://169.254.169.254/latest", "http://0.0.0.0/"):  # fmt: skip
        assert isinstance(no_private_urls(ctx, "fetch", {"u": [f"see {url} now"]}), Deny), url
    assert no_private_urls(ctx, "fetch", {"u": "https://example.com/a http://8.8.8.8/"}) == Allow()
    g = guard(input_rules=[{"hook": "tests.support.hooks:not_a_decision", "name": "odd"}])
    _, verdicts, refused = asyncio.run(g.run_hooks(ctx, {}))
    assert refused is not None and verdicts[0].detail == "the hook answered str, not Allow, Deny or Rewrite"
