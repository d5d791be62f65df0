"""The flight recorder's gateway side: what a request leaves behind, and how it leaves the process.

- `_record`: a request's record, filled on the request path (timestamps, headers, bodies, hops).
- `_emitter`: `SpanEmitter`, which packs each finished record and hands batches to the shipping
  helper over a pipe.
- `_redact`, `_prefilter`: what is scrubbed from payloads and headers before anything is stored.
- `helper/`: the shipping helper, a process of its own (rows, redaction, gRPC, spool).
"""

from ._emitter import SpanEmitter
from ._record import Hop, Record, new_hop

__all__ = ["Hop", "Record", "SpanEmitter", "new_hop"]
