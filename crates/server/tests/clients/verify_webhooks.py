"""Verifies webhook deliveries with the official Standard Webhooks library.

Reads a JSON list from stdin: [{"secret": "whsec_...", "headers": {...}, "body": "..."}]. Writes
one JSON list to stdout: null for a delivery that verifies, else the library's error message.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> None:
    results = []
    for item in json.load(sys.stdin):
        try:
            Webhook(item["secret"]).verify(item["body"], item["headers"])
            results.append(None)
        except Exception as error:  # the library's verification errors, reported, not raised
            results.append(f"{type(error).__name__}: {error}")
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
