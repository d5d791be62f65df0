"""Two JWT issuers whose users share a `sub`: they are two users (auth.jwt[].subject_prefix), a config
that would merge them is refused, and stored credentials move with `slicewire creds rename`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxy._config import AuthConfig, ConfigError, load_config
from proxy._creds import Credentials
from proxy._identity import Authenticator
from proxy._state import StateDB
from proxy._vault import Vault, new_key

AUDIENCE = "https://gw.example/v/mcp"


def _issuer(tmp: Path, name: str, prefix: str | None) -> tuple[dict[str, Any], ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp / f"{name}.pem"
    pem.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    config: dict[str, Any] = {"issuer": f"https://{name}.example", "keys_file": str(pem), "audiences": [AUDIENCE]}
    if prefix is not None:
        config["subject_prefix"] = prefix
    return config, key


def _token(issuer: dict[str, Any], key: ec.EllipticCurvePrivateKey, sub: str) -> str:
    claims = {"iss": issuer["issuer"], "sub": sub, "aud": AUDIENCE, "exp": int(time.time()) + 300}
    return jwt.encode(claims, key, algorithm="ES256")


def test_two_issuers_without_distinct_prefixes_are_a_config_error(tmp_path: Path) -> None:
    corp, _ = _issuer(tmp_path, "corp", None)
    partner, _ = _issuer(tmp_path, "partner", None)
    path = tmp_path / "sw.yaml"
    path.write_text(yaml.safe_dump({"auth": {"jwt": [corp, partner]}}))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    [problem] = refused.value.problems
    assert "auth.jwt[1].subject_prefix" in problem and "would share subjects" in problem
    partner["subject_prefix"] = "partner:"
    path.write_text(yaml.safe_dump({"auth": {"jwt": [corp, partner]}}))
    assert [i.subject_prefix for i in load_config(path).auth.jwt] == ["", "partner:"]


@pytest.mark.anyio
async def test_the_same_sub_from_two_issuers_is_two_users(tmp_path: Path) -> None:
    corp, corp_key = _issuer(tmp_path, "corp", None)
    partner, partner_key = _issuer(tmp_path, "partner", "partner:")
    auth = Authenticator(AuthConfig.model_validate({"jwt": [corp, partner]}), None)
    try:
        ours = await auth.authenticate(_token(corp, corp_key, "alice"), frozenset({AUDIENCE}))
        theirs = await auth.authenticate(_token(partner, partner_key, "alice"), frozenset({AUDIENCE}))
    finally:
        await auth.close()
    assert (ours.subject, theirs.subject) == ("alice", "partner:alice")
    assert ours.principals() != theirs.principals()  # roles naming "alice" do not reach partner:alice


def test_stored_credentials_move_to_a_prefixed_subject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLICEWIRE_SECRET_KEY", new_key())
    config = {
        "backends": [{"path": "/keyed", "transport": "streamable-http", "url": "http://127.0.0.1:9/mcp",
                      "auth": {"mode": "per_user_key", "header": "X-Key"}}],
        "auth": {"state_db": "state.db"},
    }  # fmt: skip
    path = tmp_path / "sw.yaml"
    path.write_text(yaml.safe_dump(config))

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "proxy", "creds", *args, "--config", str(path)],
                              input=stdin, capture_output=True, text=True, timeout=60)  # fmt: skip

    assert cli("set", "--backend", "/keyed", "--subject", "alice", stdin="k-123\n").returncode == 0
    moved = cli("rename", "--from", "alice", "--to", "partner:alice")
    assert moved.returncode == 0 and "moved 1 credential(s)" in moved.stderr
    again = cli("rename", "--from", "alice", "--to", "partner:alice")
    assert again.returncode == 1 and again.stderr.strip() == "slicewire: alice has no stored credentials"
    loaded = load_config(path)
    state = StateDB(loaded.auth.state_db)
    try:
        creds = Credentials(loaded, state, Vault(_key()))
        assert [r.subject for r in state.list_credentials()] == ["partner:alice"]
        assert creds._open("partner:alice", "/keyed", "key") == b"k-123"  # re-sealed under its new subject
    finally:
        state.close()


def _key() -> bytes:
    import base64
    import os

    return base64.b64decode(os.environ["SLICEWIRE_SECRET_KEY"])
