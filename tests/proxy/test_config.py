"""Configuration loading: precise errors, unknown keys, the registry JSON shape loaded unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from proxy import ConfigError, load_config

# mcp-gateway-registry's own example, kept byte for byte (tests/data/README.md)
REGISTRY_EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "virtual-server-combined-example.json"
ROOT = Path(__file__).resolve().parents[2]

BACKENDS = [
    {"path": "/github", "transport": "streamable-http", "url": "http://127.0.0.1:9001/mcp"},
    {"path": "/fs", "transport": "stdio", "command": "npx", "args": ["-y", "server-filesystem"]},
]


def write(tmp_path: Path, data: object, name: str = "slicewire.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def problems(tmp_path: Path, data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    return info.value.problems


def test_minimal_config_and_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {"backends": BACKENDS, "virtual_servers": [
        {"path": "/virtual/support/", "server_name": "S",
         "tool_mappings": [{"tool_name": "get_issue", "backend_server_path": "/github/"}]}]}))  # fmt: skip
    assert config.listen.host == "127.0.0.1" and config.listen.port == 8080
    vs = config.virtual_servers[0]
    assert vs.path == "/virtual/support"  # trailing slash normalized
    assert vs.tool_mappings[0].backend_server_path == "/github"
    assert vs.is_enabled and vs.supported_transports == ["streamable-http"]
    assert config.backend("/github").timeout_s == 30.0


def test_unknown_keys_are_errors_with_their_path(tmp_path: Path) -> None:
    found = problems(tmp_path, {"backends": [{**BACKENDS[0], "tmeout_s": 3}], "listne": {}})
    assert any("backends[0].tmeout_s: unknown key" in p for p in found)
    assert any("listne: unknown key" in p for p in found)
    assert all(p.startswith(str(tmp_path / "slicewire.yaml")) for p in found)


def test_wrong_types_say_expected_and_found(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, {"backends": [{**BACKENDS[0], "transport": "http"}]})
    assert "backends[0].transport" in problem
    assert "'streamable-http', 'sse' or 'stdio'" in problem and "found 'http'" in problem
    [problem] = problems(tmp_path, {"listen": {"port": "eighty"}})
    assert "listen.port" in problem and "found 'eighty'" in problem


def test_transport_fields_checked(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, {"backends": [{"path": "/x", "transport": "streamable-http"}]})
    assert "backends[0]" in problem and "needs 'url'" in problem
    [problem] = problems(tmp_path, {"backends": [{"path": "/x", "transport": "stdio"}]})
    assert "needs 'command'" in problem
    [problem] = problems(tmp_path, {"backends": [{"path": "/x", "transport": "sse", "url": "ftp://h"}]})
    assert "must start with http://" in problem


def test_mapping_to_unknown_backend(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, {"backends": BACKENDS, "virtual_servers": [
        {"path": "/v", "server_name": "V",
         "tool_mappings": [{"tool_name": "t", "backend_server_path": "/gitlab"}]}]})  # fmt: skip
    assert "tool_mappings[0].backend_server_path" in problem
    assert "found '/gitlab'" in problem and "/github" in problem


def test_two_mappings_exposing_one_name_name_both(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, {"backends": BACKENDS, "virtual_servers": [
        {"path": "/v", "server_name": "V", "tool_mappings": [
            {"tool_name": "read", "backend_server_path": "/github"},
            {"tool_name": "read_file", "backend_server_path": "/fs", "alias": "read"}]}]})  # fmt: skip
    assert "tool_mappings[1]" in problem and "tool_mappings[0]" in problem
    assert "'read'" in problem and "/github" in problem


def test_empty_mappings_and_bad_paths(tmp_path: Path) -> None:
    found = problems(tmp_path, {"backends": [{**BACKENDS[0], "path": "github"}], "virtual_servers": [
        {"path": "/v", "server_name": "V", "tool_mappings": []}]})  # fmt: skip
    assert any("backends[0].path" in p and "found 'github'" in p for p in found)
    assert any("virtual_servers[0]" in p and "maps at least one tool, resource or prompt" in p for p in found)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "backends:\n  - path: /x\n   transport: [\n")
    assert "invalid YAML (line" in problem


def test_json_and_yaml_flow_configs_load_alike(tmp_path: Path) -> None:
    mapping = {"tool_name": "t", "backend_server_path": "/github"}
    data = {"backends": BACKENDS, "virtual_servers": [{"path": "/v", "server_name": "S", "tool_mappings": [mapping]}]}
    as_json = load_config(write(tmp_path, json.dumps(data), "a.yaml"))  # the JSON fast path
    # YAML's flow style also starts with "{" without being JSON (unquoted keys): YAML reads it.
    flow = yaml.safe_dump(data, default_flow_style=True)
    assert flow.startswith("{") and not flow.startswith('{"')
    as_flow = load_config(write(tmp_path, flow, "b.yaml"))
    assert as_json.virtual_servers == as_flow.virtual_servers and as_json.backends == as_flow.backends
    [problem] = problems(tmp_path, '{"backends": [}')  # neither JSON nor YAML: the YAML error, with its line
    assert "invalid YAML (line 1" in problem


def test_scope_overrides_must_name_exposed_tools(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, {"backends": BACKENDS, "virtual_servers": [
        {"path": "/v", "server_name": "V", "tool_mappings": [{"tool_name": "t", "backend_server_path": "/github"}],
         "tool_scope_overrides": [{"tool_alias": "nope", "required_scopes": ["a"]}]}]})  # fmt: skip
    assert "tool_scope_overrides[0].tool_alias" in problem and "found 'nope'" in problem


def test_registry_example_loads_unchanged(tmp_path: Path) -> None:
    servers = tmp_path / "virtual-servers"
    servers.mkdir()
    shutil.copy(REGISTRY_EXAMPLE, servers / "combined.json")
    config = load_config(write(tmp_path, {
        "backends": [
            {"path": "/context7", "transport": "streamable-http", "url": "http://127.0.0.1:9001/mcp"},
            {"path": "/currenttime", "transport": "streamable-http", "url": "http://127.0.0.1:9002/mcp"}],
        "virtual_servers_dir": "virtual-servers/"}))  # fmt: skip
    [vs] = config.virtual_servers
    original = json.loads(REGISTRY_EXAMPLE.read_text())
    assert vs.path == original["path"] and vs.server_name == original["server_name"]
    assert [m.exposed_name for m in vs.tool_mappings] == ["resolve-library-id", "query-docs", "get-current-time"]
    assert vs.tool_mappings[2].backend_server_path == "/currenttime"
    assert vs.tags == original["tags"]


def test_json_file_errors_name_the_file(tmp_path: Path) -> None:
    servers = tmp_path / "vs"
    servers.mkdir()
    (servers / "bad.json").write_text('{"path": "/v", "server_name": "V", "tool_mappings": [], "colour": 1}')
    found = problems(tmp_path, {"backends": BACKENDS, "virtual_servers_dir": "vs"})
    assert all(str(servers / "bad.json") in p for p in found)
    assert any("colour: unknown key" in p for p in found)


def test_duplicate_paths(tmp_path: Path) -> None:
    found = problems(tmp_path, {"backends": [BACKENDS[0], BACKENDS[0]]})
    assert any("already used by backends[0]" in p for p in found)


def test_demo_config_is_valid() -> None:
    config = load_config(ROOT / "examples" / "demo.yaml")
    assert {vs.path for vs in config.virtual_servers} == {"/virtual/support", "/virtual/docs"}


def test_credentials_in_a_backend_url_are_refused_without_showing_them(tmp_path: Path) -> None:
    url = "https://svc:pa55w0rd-Zq@mcp.example.com/mcp"
    [problem] = problems(tmp_path, {"backends": [{"path": "/x", "transport": "streamable-http", "url": url}]})
    assert "must not carry credentials" in problem and "auth" in problem
    assert "pa55w0rd-Zq" not in problem


def test_tls_options(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here")
    ok = {"path": "/x", "transport": "streamable-http", "url": "https://mcp.example.com/mcp",
          "tls": {"ca_file": "ca.pem", "verify": True}}  # fmt: skip
    [backend] = load_config(write(tmp_path, {"backends": [ok]})).backends
    assert backend.tls.ca_file == str(tmp_path / "ca.pem")  # found next to the config file
    plain = {**ok, "url": "http://mcp.example.com/mcp"}
    assert "'tls' is only for https:// backends" in problems(tmp_path, {"backends": [plain]})[0]
    missing = {**ok, "tls": {"cert_file": "client.pem"}}
    assert problems(tmp_path, {"backends": [missing]}) == [
        f"{tmp_path / 'slicewire.yaml'}: backends[/x].tls.cert_file: cannot read file {tmp_path / 'client.pem'}"
    ]
    key_only = {**ok, "tls": {"key_file": "client.key"}}
    assert "'key_file' needs 'cert_file'" in problems(tmp_path, {"backends": [key_only]})[0]
