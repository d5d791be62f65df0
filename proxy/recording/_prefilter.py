"""Redaction's fast path: does this serialized JSON possibly hold anything to redact?

Most payloads hold nothing to redact, and walking a decoded value costs far more than proxying it.
A prefilter answers "certainly clean" from the bytes alone; anything else gets the exact walk. It
must never say clean when the walk would redact something (a false "maybe" only costs time).

Two implementations of the same rules:

- `HyperscanPrefilter` (Intel Hyperscan, via the `hyperscan` wheel): every rule compiled into one
  automaton, one pass over the bytes. ~0.6 µs for a 500-byte payload where the byte searches below
  take ~10 µs, and `dirty()` scans a whole batch's payloads in one call; what keeps recording
  within a few percent of the gateway's throughput.
- `BytesPrefilter`: plain `in` searches, for platforms without a hyperscan wheel.

    prefilter = make_prefilter(Rules(keys={"password"}, paths=[], patterns=[], secrets=[]))
    prefilter.maybe(b'{"q": "weather"}')      # False: nothing to redact, skip the walk
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any

__all__ = ["ANCHORS", "DEFAULT_PATTERNS", "BytesPrefilter", "HyperscanPrefilter", "Rules", "make_prefilter"]

hyperscan: Any
try:
    import hyperscan
except ImportError:  # no wheel for this platform: the byte searches do the same job, slower
    hyperscan = None

# The default redaction patterns (recorder.redact.patterns), each with the literals (lower-cased) that
# every match contains: a payload without any of them cannot match, so the prefilter searches for those
# instead of running the pattern. Patterns a user adds are run as they are.
ANCHORS: dict[str, tuple[str, ...]] = {
    r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+": ("bearer",),
    # OpenAI/Stripe secret, publishable and restricted keys; GitHub classic tokens; Slack tokens
    r"\b(sk|pk|rk|ghp|gho|ghu|ghs|ghr|xox[abprs])[-_][A-Za-z0-9_-]{8,}": (
        "sk-", "sk_", "pk-", "pk_", "rk-", "rk_", "ghp", "gho", "ghu", "ghs", "ghr", "xox",
    ),
    r"\bgithub_pat_[A-Za-z0-9_]{22,}": ("github_pat_",),  # GitHub fine-grained tokens
    r"\b(AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b": ("akia", "asia", "abia", "acca"),  # AWS access key ids
    r"(?i)aws_?secret_?access_?key\W{0,5}[A-Za-z0-9/+=]{40}": ("secret",),  # AWS secret keys, named
    r"\bAIza[0-9A-Za-z_-]{35}": ("aiza",),  # Google Cloud API keys
    r"(?i)AccountKey=[A-Za-z0-9+/=]{20,}": ("accountkey=",),  # Azure storage connection strings
    r"\b[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}": ("q~",),  # Azure AD client secrets
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+": ("hooks.slack.com",),  # Slack webhooks
    r"\bxapp-[0-9]-[A-Za-z0-9-]{10,}": ("xapp-",),  # Slack app tokens
    r"\bwhsec_[A-Za-z0-9]{16,}": ("whsec_",),  # Stripe webhook secrets
    r"-----BEGIN ([A-Z]+ )*PRIVATE KEY-----[^-]*(-----END ([A-Z]+ )*PRIVATE KEY-----)?": ("private key-----",),
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}": ("eyj",),  # JWTs
}  # fmt: skip
DEFAULT_PATTERNS = list(ANCHORS)
# The JSON escapes that decode to each character: a key or anchor holding that character could be
# spelled with the escape in raw JSON, which a byte search for the plain spelling would miss.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class Rules:
    """What a payload must contain for the walk to possibly redact something, derived once."""

    def __init__(
        self, keys: Iterable[str], paths: Sequence[list[str | int]], patterns: Sequence[str], secrets: Iterable[bytes]
    ) -> None:
        self.keys = sorted({k.lower() for k in keys})  # matched case-insensitively
        self.path_keys: list[str] = []  # the key each JSON path ends in, matched exactly
        self.always = False  # no byte rule can decide: always walk
        for path in paths:
            named = [step for step in path if isinstance(step, str) and step != "*"]
            if not named:
                self.always = True
            else:
                self.path_keys.append(named[-1])
        self.anchors: list[str] = []  # literals (case-insensitive) every match of a pattern contains
        self.patterns: list[str] = []  # patterns without known anchors: run on the raw bytes
        for pattern in patterns:
            anchors = ANCHORS.get(pattern)
            if anchors:
                self.anchors.extend(anchors)
            elif re.search(r"(?<![\\\[])\^|(?<!\\)\$|\\[AZz]", pattern):
                self.always = True  # anchored to a string's start or end: meaningless on raw JSON bytes
            else:
                self.patterns.append(pattern)
        self.secrets = list(secrets)  # as they appear inside serialized JSON, matched exactly
        # The escapes that could spell a character of a key: a byte search for the plain spelling
        # would miss `"pass\u0077ord"`. Any \u00XX (an ASCII character) is always one of them.
        spelled = "".join(self.keys) + "".join(self.path_keys)
        self.escapes = sorted({_ESCAPES[c] for c in spelled if c in _ESCAPES})
        # A non-ASCII key can be spelled with any \uXXXX escape.
        self.unicode_escape = "\\u00" if spelled.isascii() else "\\u"
        # A pattern run on raw bytes misses a match that spans an escape (`Bearer\nabc` decodes to
        # a newline): with such patterns, any backslash means "maybe".
        self.backslash_matters = bool(self.patterns)


class BytesPrefilter:
    """The rules as byte searches over the lower-cased payload (substring matches: a superset)."""

    def __init__(self, rules: Rules) -> None:
        keys = rules.keys + [k.lower() for k in rules.path_keys]
        # bytes.lower() folds ASCII only: a non-ASCII key cannot be searched for case-insensitively.
        self.always = rules.always or any(not k.isascii() for k in keys)
        minimal = sorted({k for k in keys if not any(o != k and o in k for o in keys)})  # "token" covers "id_token"
        self.needles = [k.encode("utf-8") for k in minimal] + [e.encode() for e in rules.escapes]
        self.needles.append(rules.unicode_escape.encode())
        self.needles += [a.encode("utf-8") for a in rules.anchors]
        self.patterns = [re.compile(p.encode("utf-8")) for p in rules.patterns]
        self.backslash_matters = rules.backslash_matters
        self.secrets = rules.secrets

    def dirty(self, payloads: Sequence[bytes]) -> set[int]:
        """The indices of the payloads that may hold something to redact."""
        return {index for index, data in enumerate(payloads) if self.maybe(data)}

    def maybe(self, data: bytes) -> bool:
        if self.always or (self.backslash_matters and b"\\" in data):
            return True
        lowered = data.lower()
        for needle in self.needles:
            if needle in lowered:
                return True
        for pattern in self.patterns:
            if pattern.search(data):
                return True
        for secret in self.secrets:
            if secret in data:
                return True
        return False


class HyperscanPrefilter:
    """The rules compiled into one Hyperscan database; `maybe()` is one scan that stops at the first
    match. JSON keys are matched exactly (`"key"` then `:`), so a value that merely contains a key's
    name does not force a walk."""

    def __init__(self, rules: Rules) -> None:
        assert hyperscan is not None
        self.always = rules.always
        self.backslash_matters = rules.backslash_matters
        expressions: list[bytes] = []
        flags: list[int] = []

        def add(expression: bytes, flag: int = 0) -> None:
            expressions.append(expression)
            flags.append(flag)

        caseless = hyperscan.HS_FLAG_CASELESS
        unicode = hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_UCP  # Unicode case folding, for non-ASCII keys
        for key in rules.keys:
            add(b'"' + re.escape(key).encode("utf-8") + rb'"\s*:', caseless | (0 if key.isascii() else unicode))
        for key in rules.path_keys:
            add(b'"' + re.escape(key).encode("utf-8") + rb'"\s*:', 0 if key.isascii() else hyperscan.HS_FLAG_UTF8)
        add(rb"\\u00[0-7][0-9a-fA-F]" if rules.unicode_escape == "\\u00" else rb"\\u")
        for escape in rules.escapes:
            add(re.escape(escape).encode())
        for anchor in rules.anchors:
            add(re.escape(anchor).encode("utf-8"), caseless)
        self.patterns: list[re.Pattern[bytes]] = []
        for pattern in rules.patterns:
            if _compiles(pattern.encode("utf-8")):
                add(pattern.encode("utf-8"))
            else:  # syntax Hyperscan lacks (e.g. back-references): run it with `re`
                self.patterns.append(re.compile(pattern.encode("utf-8")))
        for secret in rules.secrets:
            add(re.escape(secret))
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=expressions, ids=list(range(len(expressions))), flags=flags)
        self._lock = threading.Lock()  # a database's scratch space serves one scan at a time

    def maybe(self, data: bytes) -> bool:
        if self.always or (self.backslash_matters and b"\\" in data):
            return True
        try:
            with self._lock:
                self._db.scan(data, match_event_handler=_stop)
        except hyperscan.ScanTerminated:
            return True
        for pattern in self.patterns:
            if pattern.search(data):
                return True
        return False

    def dirty(self, payloads: Sequence[bytes]) -> set[int]:
        """The indices of the payloads that may hold something to redact: all of them scanned as one
        buffer (one call, however many payloads), each match mapped back to its payload."""
        if self.always:
            return set(range(len(payloads)))
        starts = list(accumulate((len(p) + 1 for p in payloads), initial=0))
        found: set[int] = set()

        def on_match(_id: int, _from: int, to: int, _flags: int, _context: Any) -> bool:
            found.add(bisect_right(starts, to - 1) - 1)  # the separator counts as its payload's: no false negative
            return False

        with self._lock:
            self._db.scan(b"\n".join(payloads), match_event_handler=on_match)
        if self.backslash_matters or self.patterns:
            for index, data in enumerate(payloads):
                if index not in found and (
                    (self.backslash_matters and b"\\" in data) or any(p.search(data) for p in self.patterns)
                ):
                    found.add(index)
        return found


def _stop(*_: Any) -> bool:
    return True  # one match is enough: stop the scan


def _compiles(expression: bytes) -> bool:
    try:
        hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK).compile(expressions=[expression])
    except hyperscan.error:
        return False
    return True


def make_prefilter(rules: Rules, use_hyperscan: bool = True) -> BytesPrefilter | HyperscanPrefilter:
    if use_hyperscan and hyperscan is not None:
        return HyperscanPrefilter(rules)
    return BytesPrefilter(rules)
