"""Demo backends for `scripts/demo`: a GitHub-like server (with a destructive tool) and a docs server.

python examples/demo_backends.py github --port 9001
"""

from __future__ import annotations

import argparse

from fastmcp import FastMCP

ISSUES = {
    1: {"number": 1, "title": "Router drops packets", "state": "open", "comments": 3},
    2: {"number": 2, "title": "Docs: reset procedure", "state": "closed", "comments": 1},
}


def github() -> FastMCP:
    mcp = FastMCP("demo-github", version="1.0.0")

    @mcp.tool(annotations={"readOnlyHint": True})
    def get_issue(number: int) -> dict:
        """Fetch one issue by number."""
        if number not in ISSUES:
            raise ValueError(f"no issue #{number}")
        return ISSUES[number]

    @mcp.tool(annotations={"readOnlyHint": True})
    def list_issues(state: str = "open") -> list[dict]:
        """List issues in a state (open or closed)."""
        return [i for i in ISSUES.values() if i["state"] == state]

    @mcp.tool(annotations={"destructiveHint": True})
    def delete_repo(repo: str) -> str:
        """Delete a repository. Dangerous: no demo slice exposes it."""
        return f"deleted {repo}"

    return mcp


def docs() -> FastMCP:
    mcp = FastMCP("demo-docs", version="1.0.0")

    @mcp.tool(annotations={"readOnlyHint": True})
    def search_docs(query: str) -> list[str]:
        """Search the product documentation."""
        pages = ["Resetting the router", "Calling support", "Warranty"]
        return [p for p in pages if query.lower() in p.lower()] or pages

    return mcp


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("server", choices=["github", "docs"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = {"github": github, "docs": docs}[args.server]()
    server.run(transport="http", host="127.0.0.1", port=args.port, show_banner=False, log_level="warning")
