"""Credentials in the formats the default redaction patterns know (proxy/recording/_prefilter.py): fake values of
the real shapes. Each must be redacted wherever a payload carries it, in every output."""

from __future__ import annotations

CREDENTIALS = {
    "aws access key id": "AKIAIOSFODNN7EXAMPLE",
    "aws secret access key": "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "google cloud api key": "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
    "azure storage key": "AccountKey=Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy==",
    "azure client secret": "abc8Q~Zx1yW2vU3tS4rQ5pO6nM7lK8jI9hG0fE1d",
    "slack bot token": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "slack webhook": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "slack app token": "xapp-1-A0123456789-1234567890123-abcdef0123456789",
    "stripe secret key": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "stripe restricted key": "rk_live_51H8abcdefghijklmnop",
    "stripe webhook secret": "whsec_abcdefghijklmnop1234",
    "github fine-grained token": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ",
    "github classic token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "private key block": (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq9TESTONLY\nq83kDJ+/=\n-----END RSA PRIVATE KEY-----"
    ),
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    "bearer credential": "Bearer abc.def-ghi-jkl",
}


def secret_parts() -> list[str]:
    """What must never appear in an output: each credential's secret part (a named one's value)."""
    parts = []
    for value in CREDENTIALS.values():
        secret = value.split("=", 1)[1] if value.startswith(("AWS_SECRET", "AccountKey")) else value
        parts.append(secret.split("Bearer ", 1)[-1])
        if "PRIVATE KEY" in value:
            parts.append("MIIEpAIBAAKCAQEA7bq9TESTONLY")
    return parts
