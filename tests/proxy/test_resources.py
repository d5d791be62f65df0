"""Resource routing (proxy/_resources.py) and the slicing of resources and prompts (proxy/_slice.py):
pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy._catalog import Offer
from proxy._config import VirtualServerConfig
from proxy._resources import ResourceRouter, TemplateError, UriTemplate, expose_blocks
from proxy._slice import Slice
from tests.proxy.test_config import problems


def router() -> ResourceRouter:
    return ResourceRouter.build([
        ("/fs", "prefix", "file:///data/", "files://", 0),
        ("/fs", "uri", "file:///etc/motd", "motd://", 1),
        ("/api", "template", "api://users/{id}/posts{?page}", "people://{id}/posts{?page}", 2),
        ("/api", "prefix", "api://", "api://", 3),
    ])  # fmt: skip


def test_exact_uris_prefixes_and_templates_route_both_ways() -> None:
    r = router()
    assert (r.inbound("files://a/b.txt").backend, r.inbound("files://a/b.txt").uri) == ("/fs", "file:///data/a/b.txt")
    assert r.inbound("motd://").uri == "file:///etc/motd"
    post = r.inbound("people://42/posts?page=3")
    assert (post.backend, post.uri, post.mapping) == ("/api", "api://users/42/posts?page=3", 2)
    assert r.inbound("api://status").uri == "api://status"  # an unrenamed prefix
    assert r.outbound("/fs", "file:///data/x") == "files://x"
    assert r.outbound("/fs", "file:///etc/motd") == "motd://"
    assert r.outbound("/api", "api://users/7/posts") == "people://7/posts"
    # Outside every mapping, or another backend's URI: not in the slice.
    assert r.inbound("file:///data/a") is None
    assert r.outbound("/fs", "file:///home/secret") is None
    assert r.outbound("/other", "file:///data/x") is None


def test_templates_are_renamed_for_listing_and_completion() -> None:
    r = router()
    assert r.outbound_template("/api", "api://users/{id}/posts{?page}") == ("people://{id}/posts{?page}", 2)
    assert r.inbound_template("people://{id}/posts{?page}") == ("/api", "api://users/{id}/posts{?page}")
    assert r.outbound_template("/fs", "file:///data/{name}") == ("files://{name}", 0)
    assert r.outbound_template("/fs", "file:///elsewhere/{name}") is None


@given(st.text(alphabet=st.characters(blacklist_characters="/?#&"), max_size=20))
def test_a_template_carries_any_simple_value_across(value: str) -> None:
    backend, exposed = UriTemplate("x://a/{v}/b"), UriTemplate("y://{v}")
    values = backend.match(f"x://a/{value}/b")
    assert values == (value,)
    assert exposed.fill(values) == f"y://{value}"


@pytest.mark.parametrize("bad", ["x://{", "x://}", "x://{}", "x://{a b}", "x://{a}{"])
def test_malformed_templates_are_refused(bad: str) -> None:
    with pytest.raises(TemplateError):
        UriTemplate(bad)


def test_links_outside_the_slice_are_left_out_and_embedded_resources_kept() -> None:
    r = router()
    blocks: list[Any] = [
        {"type": "text", "text": "hi"},
        {"type": "resource_link", "uri": "file:///data/a", "name": "a"},
        {"type": "resource_link", "uri": "file:///home/secret", "name": "secret"},
        {"type": "resource", "resource": {"uri": "file:///data/b", "text": "B"}},
        {"type": "resource", "resource": {"uri": "mem://scratch", "text": "kept"}},
    ]
    shaped = expose_blocks(r, "/fs", blocks)
    assert shaped == [
        {"type": "text", "text": "hi"},
        {"type": "resource_link", "uri": "files://a", "name": "a"},
        {"type": "resource", "resource": {"uri": "files://b", "text": "B"}},
        {"type": "resource", "resource": {"uri": "mem://scratch", "text": "kept"}},
    ]
    plain = [{"type": "text", "text": "nothing to rewrite"}]
    assert expose_blocks(r, "/fs", plain) is plain  # no copy on the common path


def test_a_slice_lists_only_mapped_resources_and_prompts_under_their_exposed_names() -> None:
    vs = VirtualServerConfig.model_validate({
        "path": "/v", "server_name": "V",
        "resource_mappings": [
            {"backend_server_path": "/fs", "uri_prefix": "file:///data/", "expose_as": "files://"},
            {"backend_server_path": "/fs", "uri": "file:///etc/motd", "description_override": "Message of the day"},
            {"backend_server_path": "/api", "uri_template": "api://u/{id}", "expose_as": "people://{id}"},
        ],
        "prompt_mappings": [{"backend_server_path": "/api", "prompt_name": "summarize", "alias": "tldr",
                             "description_override": "Short summary"}],
    })  # fmt: skip
    offers = {
        "/fs": Offer(
            resources=(
                {"uri": "file:///data/a", "name": "a"},
                {"uri": "file:///etc/motd", "name": "motd"},
                {"uri": "file:///etc/shadow", "name": "shadow"},
            ),
            subscribe=True,
        ),
        "/api": Offer(
            templates=(
                {"uriTemplate": "api://u/{id}", "name": "user"},
                {"uriTemplate": "api://admin/{x}", "name": "x"},
            ),
            prompts=({"name": "summarize", "description": "Summarize"}, {"name": "drop_tables"}),
            completions=True,
        ),
    }
    sliced = Slice.build(vs, {}, {}, offers)
    assert [r["uri"] for r in sliced.resources] == ["files://a", "file:///etc/motd"]
    assert sliced.resources[1]["description"] == "Message of the day"
    assert [t["uriTemplate"] for t in sliced.templates] == ["people://{id}"]
    assert sliced.prompts == ({"name": "tldr", "description": "Short summary"},)
    assert sliced.prompt_routes["tldr"].tool_name == "summarize"
    assert "drop_tables" not in sliced.prompt_routes
    assert sliced.subscribe and sliced.completions
    missing = Slice.build(vs.model_copy(update={"prompt_mappings": [vs.prompt_mappings[0].model_copy(
        update={"prompt_name": "gone"})]}), {}, {}, offers)  # fmt: skip
    assert any("no prompt named 'gone'" in p for p in missing.problems)


def test_config_refuses_colliding_or_malformed_resource_and_prompt_mappings(tmp_path: Any) -> None:
    backends = [{"path": p, "transport": "streamable-http", "url": "http://127.0.0.1:9/mcp"} for p in ("/a", "/b")]
    malformed = "\n".join(problems(tmp_path, {"backends": backends, "virtual_servers": [{
        "path": "/v", "server_name": "V",
        "resource_mappings": [
            {"backend_server_path": "/b", "uri": "z://1", "uri_prefix": "z://"},
            {"backend_server_path": "/b", "uri_template": "t://{a}", "expose_as": "u://{b}"},
        ],
    }]}))  # fmt: skip
    assert "resource_mappings[0]" in malformed and "exactly one of uri, uri_prefix, uri_template" in malformed
    assert "resource_mappings[1]" in malformed and "keep the template's expressions" in malformed
    found = problems(tmp_path, {"backends": backends, "virtual_servers": [{
        "path": "/v", "server_name": "V",
        "resource_mappings": [
            {"backend_server_path": "/a", "uri_prefix": "x://", "expose_as": "shared://"},
            {"backend_server_path": "/b", "uri_prefix": "y://", "expose_as": "shared://deeper/"},
            {"backend_server_path": "/nope", "uri": "n://1"},
        ],
        "prompt_mappings": [{"backend_server_path": "/a", "prompt_name": "p"},
                            {"backend_server_path": "/b", "prompt_name": "p"}],
        "prompt_scope_overrides": [{"prompt_alias": "q", "required_scopes": ["s"]}],
    }]})  # fmt: skip
    text = "\n".join(found)
    assert "under resource_mappings[0]'s 'shared://'" in text
    assert "resource_mappings[2].backend_server_path" in text
    assert "prompt_mappings[1]: exposes prompt 'p'" in text
    assert "prompt_scope_overrides[0].prompt_alias" in text


def test_a_virtual_server_needs_some_mapping() -> None:
    with pytest.raises(ValueError, match="at least one tool, resource or prompt"):
        VirtualServerConfig.model_validate({"path": "/v", "server_name": "V"})
