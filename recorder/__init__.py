"""Slicewire's flight recorder: spans of every JSON-RPC message, stored in DuckDB.

Not built yet: the gateway core comes first (issue 2); the recorder is issue 3.
"""

__all__: list[str] = []
