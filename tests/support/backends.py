"""FastMCP servers the tests run as real backend processes.

    python -m tests.support.backends alpha --port 9001 [--transport http|stdio]

`alpha` holds the tools the slices expose plus `delete_repo`, a destructive tool no slice maps;
`beta` is a second backend; `call_log` (never exposed) tells a test which tools a backend ran.
`gamma` checks credentials: `whoami` answers with the Authorization (and X-Org) header it received,
and with REQUIRE_AUTH set in its environment every HTTP request without exactly that Authorization
header is refused with 401 — discovery included.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import mcp_types
from fastmcp import Context, FastMCP

CALLS: list[str] = []


def alpha() -> FastMCP:
    mcp = FastMCP("alpha", version="1.2.3")

    @mcp.tool(annotations={"readOnlyHint": True, "title": "Echo"})
    def echo(text: str) -> str:
        """Echo the text back."""
        CALLS.append("echo")
        return text

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        CALLS.append("add")
        return a + b

    @mcp.tool
    def structured(name: str) -> dict:
        """Return structured content."""
        CALLS.append("structured")
        return {"greeting": f"hello {name}", "length": len(name)}

    @mcp.tool
    def fail(message: str) -> str:
        """Always raises: the result has isError true."""
        CALLS.append("fail")
        raise ValueError(message)

    @mcp.tool
    async def progress(ctx: Context, steps: int = 3) -> str:
        """Report progress `steps` times."""
        CALLS.append("progress")
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        return f"{steps} steps"

    @mcp.tool
    async def ask(ctx: Context, question: str = "Your name?") -> str:
        """Elicit a name from the user (needs a legacy-era session to the backend)."""
        CALLS.append("ask")
        answer = await ctx.elicit(question, response_type=str)
        if answer.action != "accept":
            return f"no answer ({answer.action})"
        return f"hello {answer.data}"

    @mcp.tool
    async def sleep(seconds: float) -> str:
        """Sleep, then answer."""
        CALLS.append("sleep")
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            CALLS.append("sleep-cancelled")
            raise
        return "slept"

    @mcp.tool
    async def guarded(ctx: Context) -> Any:
        """Ask for a name the 2026-07-28 way: return InputRequiredResult, answer on the retry (MRTR)."""
        responses = ctx.input_responses or {}
        answer = responses.get("name")
        if answer is not None:
            CALLS.append("guarded")
            content = getattr(answer, "content", None) or {}
            return f"guarded hello {content.get('value', '?')} ({ctx.request_state})"
        ask = mcp_types.ElicitRequest(
            params=mcp_types.ElicitRequestFormParams(
                message="Name, please?",
                requested_schema={"type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]},
            )
        )
        return mcp_types.InputRequiredResult(input_requests={"name": ask}, request_state="state-1")

    @mcp.tool
    def login(user: str, password: str) -> str:
        """Check a password (recording tests: the password must never be recorded)."""
        CALLS.append("login")
        return f"welcome {user}" if password else "denied"

    @mcp.tool(annotations={"destructiveHint": True})
    def delete_repo(repo: str) -> str:
        """Delete a repository. No slice may expose this."""
        CALLS.append("delete_repo")
        return f"deleted {repo}"

    @mcp.tool
    def blob(size: int) -> str:
        """A text of `size` bytes (large answers through the gateway)."""
        return "x" * size

    @mcp.tool
    def crash() -> str:
        """Exit the process at once (for restart tests over stdio)."""
        CALLS.append("crash")
        os._exit(3)

    @mcp.tool
    def call_log() -> list[str]:
        """Which tools ran in this process, in order."""
        return list(CALLS)

    @mcp.tool
    async def grow(ctx: Context, name: str) -> str:
        """Add a tool named `name` at run time and announce the change."""
        CALLS.append("grow")

        def grown() -> str:
            return f"{name} is new"

        mcp.tool(grown, name=name, description=f"Added at run time: {name}")
        await ctx.send_notification(mcp_types.ToolListChangedNotification())
        return f"added {name}"

    return mcp


def beta() -> FastMCP:
    # Pages of two tools: the gateway must follow nextCursor to see them all.
    mcp = FastMCP("beta", version="0.9.0", list_page_size=2)

    @mcp.tool
    def get_issue(number: int) -> dict:
        """Fetch an issue."""
        CALLS.append("get_issue")
        return {"number": number, "title": f"Issue {number}", "state": "open"}

    @mcp.tool
    def search(query: str) -> list[str]:
        """Search issues."""
        CALLS.append("search")
        return [f"{query}-1", f"{query}-2"]

    @mcp.tool
    def call_log() -> list[str]:
        """Which tools ran in this process, in order."""
        return list(CALLS)

    return mcp


def gamma() -> FastMCP:
    mcp = FastMCP("gamma", version="1.0.0")

    @mcp.tool
    def whoami() -> dict:
        """The credential this call arrived with."""
        from fastmcp.server.dependencies import get_http_headers

        headers = get_http_headers(include={"authorization", "x-org"})
        return {"authorization": headers.get("authorization"), "x_org": headers.get("x-org")}

    @mcp.tool
    def read_repo(repo: str) -> str:
        """Read a repository."""
        return f"contents of {repo}"

    @mcp.tool
    def delete_repo(repo: str) -> str:
        """Delete a repository."""
        return f"deleted {repo}"

    return mcp


class RequireAuth:
    """ASGI middleware: 401 for any HTTP request whose Authorization is not exactly `expected`."""

    def __init__(self, app: Any, expected: str) -> None:
        self.app, self.expected = app, expected.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.expected:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"wrong or missing credential"})
            return
        await self.app(scope, receive, send)


def delta() -> FastMCP:
    """The replay tests' backend. DELTA_VARIANT=changed in its environment changes its behaviour:
    `get_user` answers another plan and renames `name` to `display_name`, `lookup` raises, `events`
    has an event and a tag more; volatile fields (time, UUID, epochs, request ids) change every call.
    With DELTA_VARIANT=changed or redefined, `status` is re-described and `events` takes one argument
    more (its answers unchanged with `redefined`)."""
    import datetime
    import json
    import random
    import time
    import uuid

    variant = os.environ.get("DELTA_VARIANT", "")
    changed, redefined = variant == "changed", variant in ("changed", "redefined")
    mcp = FastMCP("delta", version="2.0.0")
    counter = [0]

    status_doc = "Service status, with clocks, request ids and the current load." if redefined else "Service status."

    @mcp.tool(annotations={"readOnlyHint": True}, description=status_doc)
    def status() -> dict:
        CALLS.append("status")
        now = time.time()
        request = f"req_{uuid.uuid4().hex[:8]}x{random.randint(1000, 9999)}"  # letters and digits: a prefixed id
        at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        return {"epoch": int(now), "epoch_ms": int(now * 1000), "request": request,
                "note": f"generated at {at} by {request}", "load": random.randint(0, 10**6)}  # fmt: skip

    def timeline() -> dict:
        CALLS.append("events")
        events = [{"id": 1, "what": "created"}, {"id": 2, "what": "paid"}, {"id": 3, "what": "shipped"}]
        tags = ["vip", "eu", "annual"]
        if changed:
            events.insert(1, {"id": 9, "what": "refunded"})
            tags.insert(0, "flagged")
        return {"events": events, "tags": tags}

    if redefined:

        @mcp.tool(annotations={"readOnlyHint": True})
        def events(limit: int = 10, since: str = "") -> dict:
            """An order's events and tags."""
            return timeline()
    else:

        @mcp.tool(annotations={"readOnlyHint": True})
        def events(limit: int = 10) -> dict:
            """An order's events and tags."""
            return timeline()

    @mcp.tool
    def reset(to: int = 0) -> int:
        """Set the counter (a replay's setup hook)."""
        CALLS.append("reset")
        counter[0] = to
        return to

    @mcp.tool(annotations={"destructiveHint": True, "readOnlyHint": False})
    def bump() -> int:
        """Add one to the counter: state that a replay must start from."""
        CALLS.append("bump")
        counter[0] += 1
        return counter[0]

    @mcp.tool(annotations={"readOnlyHint": True})
    def get_user(user_id: int) -> dict:
        """A user record, with when it was read and a request UUID."""
        CALLS.append("get_user")
        user = {"id": user_id, "name": "ada", "plan": "free" if changed else "pro",
                "seen_at": datetime.datetime.now(datetime.UTC).isoformat(), "request": str(uuid.uuid4())}  # fmt: skip
        if changed:  # a schema change too: `name` renamed
            user["display_name"] = user.pop("name")
        return user

    @mcp.tool(annotations={"readOnlyHint": True})
    def lookup(key: str) -> str:
        """A JSON document, as text."""
        CALLS.append("lookup")
        if changed:
            raise ValueError(f"no such key: {key}")
        return json.dumps({"key": key, "value": key.upper()})

    @mcp.tool
    def login(user: str, password: str) -> str:
        """Welcome a user with the right password."""
        CALLS.append("login")
        return f"welcome {user}" if password == "open-sesame-77" else "wrong password"

    @mcp.tool(annotations={"readOnlyHint": True})
    def ask(ctx: Context, question: str) -> Any:
        """Ask the agent for a name (elicitation) the 2026-07-28 way: InputRequiredResult, answered on
        the retry. The gateway relays the question to a 2025-11-25 client on its session's stream."""
        answer = (ctx.input_responses or {}).get("name")
        if answer is not None:
            CALLS.append("ask")
            return f"hello {(getattr(answer, 'content', None) or {}).get('value', '?')}"
        schema = {"type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]}
        params = mcp_types.ElicitRequestFormParams(message=question, requested_schema=schema)
        return mcp_types.InputRequiredResult(input_requests={"name": mcp_types.ElicitRequest(params=params)})

    @mcp.tool(annotations={"destructiveHint": True, "readOnlyHint": False})
    def wipe(what: str) -> str:
        """Delete everything (destructive)."""
        CALLS.append("wipe")
        return f"wiped {what}"

    @mcp.tool
    def call_log() -> list[str]:
        """The tools this process ran, in order (never exposed by a slice)."""
        return list(CALLS)

    @mcp.resource("delta://plans/{user_id}", mime_type="application/json", description="A user's plan")
    def plan(user_id: str) -> str:
        CALLS.append("read plan")
        return json.dumps({"user": user_id, "plan": "free" if changed else "pro"})

    @mcp.prompt(description="A greeting for a user")
    def greet(name: str) -> str:
        CALLS.append("get greet")
        return f"Greet {name} warmly." if changed else f"Greet {name}."

    return mcp


def epsilon() -> FastMCP:
    """The guardrail tests' backend: tools whose arguments and results the guardrails act on, and
    `call_log` (what actually arrived here)."""
    mcp = FastMCP("epsilon", version="1.0.0")

    @mcp.tool
    def search_issues(repo: str, query: str, state: str = "open", limit: int = 10) -> dict:
        """Search a repository's issues."""
        CALLS.append(f"search_issues {repo} {query!r} {state}")
        return {"repo": repo, "query": query, "state": state, "limit": limit}

    @mcp.tool
    def customer(customer_id: int) -> dict:
        """A customer record (with personal data in it)."""
        CALLS.append(f"customer {customer_id}")
        record = {"id": customer_id, "name": "Ada", "email": "ada@example.com",
                  "note": "call back after 5pm; key sk-proj-abcdefghijklmnopqrstuvwx"}  # fmt: skip
        if customer_id == 2:
            record["card"] = "4111 1111 1111 1111"  # a test Visa number (Luhn-valid)
        return record

    @mcp.tool
    def report(lines: int) -> str:
        """A long report."""
        CALLS.append(f"report {lines}")
        return "\n".join(f"line {i}: all quiet" for i in range(lines))

    @mcp.tool(annotations={"destructiveHint": True, "readOnlyHint": False})
    def drop_table(table: str) -> str:
        """Drop a table (destructive: approved by the user first)."""
        CALLS.append(f"drop_table {table}")
        return f"dropped {table}"

    @mcp.tool
    def call_log() -> list[str]:
        """The calls that arrived here, in order (never exposed by a slice)."""
        return list(CALLS)

    return mcp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("server", choices=["alpha", "beta", "gamma", "delta", "epsilon"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--transport", choices=["http", "stdio"], default="http")
    args = parser.parse_args()
    server = {"alpha": alpha, "beta": beta, "gamma": gamma, "delta": delta, "epsilon": epsilon}[args.server]()
    if args.transport == "stdio":
        server.run(transport="stdio", show_banner=False)
        return
    middleware = []
    if os.environ.get("REQUIRE_AUTH"):
        from starlette.middleware import Middleware

        middleware.append(Middleware(RequireAuth, expected=os.environ["REQUIRE_AUTH"]))
    server.run(
        transport="http",
        host="127.0.0.1",
        port=args.port,
        show_banner=False,
        log_level="warning",
        middleware=middleware,
    )


if __name__ == "__main__":
    main()
