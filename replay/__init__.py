"""Replay of recorded tool-call sequences, with diffs, and recordings served as mock servers.

Not built yet: it reads what the recorder (issue 3) stores; replay is issue 5.
"""

__all__: list[str] = []
