"""Auth on the hot path for a cached identity: what a request to a non-public virtual server costs
on top of a public one. In-process, CPU time, medians of rounds.

    .venv/bin/python bench/auth_bench.py          # gateway token and JWT, 100 000 requests per round

Measures the work `McpEndpoint` does per request: parse the bearer header, look the identity up in
the cache (with the revocation poll), check the audience, admit (roles, required scopes), the
caller's view of the slice (a tool scope override makes every request consult it), and the
per-call credential lookup for a per-user-key backend. Target: ≤ 20 µs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy import Config  # noqa: E402
from proxy._gateway import Gateway  # noqa: E402
from proxy._identity import bearer_token  # noqa: E402
from proxy._vault import new_key  # noqa: E402


async def measure(n: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.model_validate(
            {
                "auth": {"state_db": f"{tmp}/state.db", "groups": {"eng": ["repo:read"]}},
                "backends": [
                    {"path": "/b", "transport": "streamable-http", "url": "http://127.0.0.1:9/mcp"},
                    {
                        "path": "/k",
                        "transport": "streamable-http",
                        "url": "http://127.0.0.1:9/mcp",
                        "auth": {"mode": "per_user_key"},
                    },
                ],
                "virtual_servers": [
                    {
                        "path": "/v",
                        "server_name": "V",
                        "required_scopes": ["repo:read"],
                        "roles": {"users": ["group:eng"]},
                        "tool_mappings": [
                            {"tool_name": "read", "backend_server_path": "/b"},
                            {"tool_name": "delete", "backend_server_path": "/b"},
                            {"tool_name": "mine", "backend_server_path": "/k"},
                        ],
                        "tool_scope_overrides": [{"tool_alias": "delete", "required_scopes": ["repo:admin"]}],
                    }
                ],
            }
        )
        os.environ.setdefault("SLICEWIRE_SECRET_KEY", new_key())  # a throwaway key for the bench's sealed user key
        gateway = Gateway(config)
        gateway._start_auth()
        assert gateway.state is not None
        gateway._rebuild(notify=False)
        server = gateway.servers["/v"]
        token, _ = gateway.state.create_token("alice", "personal", [], ["eng"])
        gateway.creds.set_key("alice", "/k", "k-123")
        header = f"Bearer {token}"
        auth, policy, creds = gateway.auth, server.policy, gateway.creds
        backend_k = config.backend("/k")
        assert backend_k is not None
        await auth.authenticate(token, server.audiences)  # the first request verifies; the rest hit the cache

        async def one() -> None:
            raw = bearer_token(header)
            assert raw is not None
            identity = auth.cached(raw)
            assert identity is not None
            if identity.audiences is not None and identity.audiences.isdisjoint(server.audiences):
                raise AssertionError
            assert policy.admit(identity) is None
            view = policy.view(identity, server.slice.tools, server.slice.routes)
            assert "read" in view.names
            await creds.for_call(backend_k, identity, "http://x")

        results = []
        for _ in range(rounds):
            started = time.thread_time()
            for _ in range(n):
                await one()
            results.append((time.thread_time() - started) / n * 1e6)
        gateway.state.close()
    return {"median_us": round(statistics.median(results), 2), "rounds_us": [round(r, 2) for r in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(measure(args.requests, args.rounds))
    print(f"auth per request, cached gateway token (+ per-user key lookup): {result['median_us']} µs (median)")
    print(result)


if __name__ == "__main__":
    main()
