"""pympp, the Python MPP SDK, buys from a running storefront as a real client.

Driven by tests/mpp_clients.rs, which starts the storefront and the Stripe stand-in. Reads
STOREFRONT_URL, MPP_SECRET, PRODUCT and CONFIGURATION (JSON) from the environment and prints one
JSON object describing what happened; exits non-zero on the first broken expectation.
"""

import asyncio
import json
import os
import sys
import uuid

import httpx
from mpp import Credential, parse_payment_receipt
from mpp.client import Mpp
from mpp.methods.stripe import client as stripe

BASE = os.environ["STOREFRONT_URL"].rstrip("/")
SECRET = os.environ["MPP_SECRET"]
PRODUCT = os.environ["PRODUCT"]
CONFIGURATION = json.loads(os.environ["CONFIGURATION"])
ORDERS = f"{BASE}/api/v1/orders"


def order_body() -> dict:
    return {"request_id": str(uuid.uuid4()), "product_id": PRODUCT, "configuration": CONFIGURATION}


def expect(condition: bool, what: str) -> None:
    if not condition:
        print(json.dumps({"failed": what}))
        sys.exit(1)


async def main() -> None:
    report: dict = {}

    # 1. 402 -> pay -> success, with a receipt the SDK parses.
    seen: dict = {}

    async def good_token(params) -> str:
        seen["challenge"] = params.challenge
        seen["spt"] = "spt_ok_" + uuid.uuid4().hex
        return seen["spt"]

    body = order_body()
    async with Mpp(methods=[stripe.charge(create_token=good_token, payment_method="pm_card_visa")]) as mpp:
        response = await mpp.fetch(ORDERS, method="POST", json=body)
    expect(response.status_code in (201, 202), f"paid order answered {response.status_code}: {response.text}")
    receipt = parse_payment_receipt(response.headers["payment-receipt"])
    expect(receipt.status == "success", "the receipt says success")
    order = response.json()["data"]["order"]
    expect(order["payment_status"] == "paid", "the order is paid")
    challenge = seen["challenge"]
    expect(challenge.verify(SECRET, challenge.realm), "the challenge id verifies with pympp's HMAC check")
    report["order_id"] = order["id"]
    report["order_status"] = order["status"]
    report["receipt_reference"] = receipt.reference
    report["status_url"] = order["status_url"]

    # 2. The same credential again: the identical request replays, another order is refused.
    replayed = Credential(
        challenge=challenge.to_echo(),
        payload={"spt": seen["spt"], "externalId": challenge.request["externalId"]},
    ).to_authorization()
    async with httpx.AsyncClient() as http:
        same = await http.post(ORDERS, json=body, headers={"Authorization": replayed})
        expect(same.headers.get("idempotent-replayed") == "true", f"identical retry replays: {same.status_code}")
        other = await http.post(ORDERS, json=order_body(), headers={"Authorization": replayed})
        expect(other.status_code == 402, f"replayed credential on another order: {other.status_code}")
        expect(other.json().get("credential_status") == "rejected", "the replayed credential is rejected")
        report["replay_code"] = other.json()["error"]["code"]

    # 3. A declined token: 402, credential_status rejected, a reason, nothing charged.
    async def declined_token(params) -> str:
        return "spt_decline_" + uuid.uuid4().hex

    async with Mpp(
        methods=[stripe.charge(create_token=declined_token, payment_method="pm_card_visa")],
        max_payment_retries=1,
    ) as mpp:
        declined = await mpp.fetch(ORDERS, method="POST", json=order_body())
    expect(declined.status_code == 402, f"declined answered {declined.status_code}")
    payload = declined.json()
    expect(payload.get("credential_status") == "rejected", "declined credential is rejected")
    expect(bool(payload.get("reason")), "a reason is given")
    report["declined_code"] = payload["error"]["code"]

    print(json.dumps(report))


asyncio.run(main())
