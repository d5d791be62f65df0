"""The TLS context of an https:// backend, from its `tls:` config (a CA bundle, no verification, a
client certificate for mTLS).

    context = tls_context(backend_config.tls)    # ssl.SSLContext for H1Pool
"""

from __future__ import annotations

import logging
import ssl

from .._config import TLSConfig

__all__ = ["tls_context"]

logger = logging.getLogger(__name__)


def tls_context(tls: TLSConfig, backend: str = "") -> ssl.SSLContext:
    """A client context: the system's CAs (or `ca_file`), hostname checks, TLS 1.2 or later."""
    context = ssl.create_default_context(cafile=tls.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not tls.verify:
        logger.warning("backend %s: tls.verify is false: its certificate is not checked", backend)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context
