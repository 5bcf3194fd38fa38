"""Webhook requests over HTTP(S), signed the Standard Webhooks way.

Headers `webhook-id` (the event id: the same on every attempt, so receivers
deduplicate), `webhook-timestamp` (seconds) and `webhook-signature` (`v1,<base64
HMAC-SHA256>` over `id.timestamp.body`), made by the `standardwebhooks` library that
receivers verify with. Redirects are not followed (`docs/security.md`).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import IO, Any

from standardwebhooks.webhooks import Webhook as Signer

from treadle.domain.errors import Unavailable

USER_AGENT = "treadle-webhooks/1"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is the answer: it counts as a failed attempt


class HttpWebhookSender:
    def __init__(self, timeout_s: float = 10.0) -> None:
        self._timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_NoRedirect())

    def send(self, url: str, secret: str, msg_id: str, now_ms: int, body: str) -> int:
        """POST `body`; the HTTP status of the answer. Unavailable when none came."""
        when = datetime.fromtimestamp(now_ms // 1000, UTC)
        signature = Signer(secret).sign(msg_id, when, body)
        request = urllib.request.Request(
            url,
            data=body.encode(),
            method="POST",
            headers={
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": msg_id,
                "webhook-timestamp": str(now_ms // 1000),
                "webhook-signature": signature,
            },
        )
        try:
            response: IO[bytes]
            with self._opener.open(request, timeout=self._timeout_s) as response:
                response.read(1024)
                return int(getattr(response, "status", 200))
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad TLS
            reason = getattr(exc, "reason", exc)
            raise Unavailable(f"No answer from the webhook: {reason}") from None
