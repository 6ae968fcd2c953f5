"""Verify the signature of a webhook request from Hookline (Standard Webhooks).

Python 3.9 or newer, standard library only. As a command:

    WEBHOOK_SECRET=whsec_... python3 verify.py WEBHOOK_ID WEBHOOK_TIMESTAMP WEBHOOK_SIGNATURE BODY_FILE

exits with 0 when the request verifies, and with 1 when it does not.
"""

import base64
import hashlib
import hmac
import os
import re
import sys
import time

TOLERANCE_SECONDS = 5 * 60


class WebhookVerificationError(Exception):
    """The request is not a genuine, recent webhook from Hookline."""


def verify(secret, webhook_id, webhook_timestamp, webhook_signature, body, now=None):
    """Check the headers `webhook-id`, `webhook-timestamp` and
    `webhook-signature` of a request against its raw body bytes.

    Raises WebhookVerificationError when the timestamp is invalid or too far
    from `now`, or when no `v1` signature matches.
    """
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)

    if not re.fullmatch(r"[0-9]+", webhook_timestamp):
        raise WebhookVerificationError("webhook-timestamp is not a Unix time in seconds")
    now = time.time() if now is None else now
    if abs(now - int(webhook_timestamp)) > TOLERANCE_SECONDS:
        raise WebhookVerificationError("webhook-timestamp is outside the 5-minute tolerance")

    signed_content = f"{webhook_id}.{webhook_timestamp}.".encode() + body
    digest = hmac.new(key, signed_content, hashlib.sha256).digest()
    expected = base64.b64encode(digest)

    # During secret rotation the header carries several signatures.
    for entry in webhook_signature.split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return
    raise WebhookVerificationError("no v1 signature matches the body")


def main(argv):
    if len(argv) != 5 or "WEBHOOK_SECRET" not in os.environ:
        print(__doc__, file=sys.stderr)
        return 2
    webhook_id, webhook_timestamp, webhook_signature, body_file = argv[1:]
    with open(body_file, "rb") as file:
        body = file.read()
    try:
        verify(os.environ["WEBHOOK_SECRET"], webhook_id, webhook_timestamp, webhook_signature, body)
    except WebhookVerificationError as error:
        print(f"rejected: {error}", file=sys.stderr)
        return 1
    print("verified")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
