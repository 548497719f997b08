"""The Python MCP SDK performs the MCP store's flow (docs/api.md, "MCP") against the storefront,
over streamable HTTP and over stdio: catalog_search -> catalog_checkout_requirements ->
quote_create -> purchase_create -> service_get -> server_restart -> server_reinstall.

Driven by tests/mcp_clients.rs. Reads STOREFRONT_URL, STOREFRONT_API_KEY, TRANSPORT (http or
stdio) and, for stdio, STOREFRONT_BIN plus the storefront's own environment (database, data
directory). Prints one JSON report; exits non-zero on the first broken expectation.
"""

import asyncio
import json
import os
import sys
import time
import uuid

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

TOOLS = {
    "catalog_search", "catalog_checkout_requirements", "quote_create", "purchase_create",
    "order_get", "service_get", "server_restart", "server_reinstall", "lease_extend",
    "lease_terminate", "credentials_get", "account_balance", "events_list",
}


def expect(condition, what):
    if not condition:
        print(json.dumps({"failed": what}))
        sys.exit(1)


def data(result, tool):
    expect(not result.is_error, f"{tool} failed: {result.content}")
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


async def wait_active(client, service_id):
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        service = data(await client.call_tool("service_get", {"serviceId": service_id}), "service_get")["service"]
        if service["status"] == "active":
            return service
        expect(service["status"] not in ("failed", "terminated"), f"machine {service['status']}")
        await asyncio.sleep(0.5)
    expect(False, "the machine became active in time")


async def flow(client):
    report = {}
    tools = await client.list_tools()
    names = {t.name for t in tools.tools}
    expect(TOOLS <= names, f"tools listed: {sorted(names)}")
    expect(all(t.input_schema.get("type") == "object" for t in tools.tools), "every tool has an input schema")
    expect(all((t.output_schema or {}).get("type") == "object" for t in tools.tools), "every tool has an output schema")
    expect(all(len(t.description or "") > 40 for t in tools.tools), "every tool says what it does")
    report["tools"] = sorted(names)

    # Errors are tool results with isError and the REST error object.
    bad = await client.call_tool("quote_create", {"productId": "no-such-product", "configuration": {}})
    expect(bad.is_error, "an unknown product is an error result")
    report["error"] = (bad.structured_content or json.loads(bad.content[0].text))["error"]
    # Arguments that do not fit the tool's schema get the same error object, naming the field.
    for tool, arguments in [
        ("server_reinstall", {"service_id": "svc_0"}),
        ("catalog_search", {"limit": "ten"}),
        ("account_balance", {"surprise": 1}),
    ]:
        wrong = await client.call_tool(tool, arguments)
        expect(wrong.is_error, f"{tool} with bad arguments is an error result")
        report.setdefault("argument_errors", {})[tool] = (
            wrong.structured_content or json.loads(wrong.content[0].text)
        )["error"]

    # 1. catalog_search
    found = data(await client.call_tool("catalog_search", {"category": "compute", "q": "linux"}), "catalog_search")
    expect(any(p["id"] == "bare-linux-machine" for p in found["products"]), "search finds the machine")
    # 2. catalog_checkout_requirements (the MCP store's spelling: catalogItemId)
    reqs = data(await client.call_tool("catalog_checkout_requirements", {"catalogItemId": "bare-linux-machine"}), "requirements")
    expect(reqs["product_id"] == "bare-linux-machine", "requirements name the product")
    # 3. quote_create
    quote = data(await client.call_tool("quote_create", {
        "catalogItemId": "bare-linux-machine", "configuration": {"durationMinutes": 30, "image": "debian-12"},
    }), "quote_create")["quote"]
    # 4. purchase_create
    key = str(uuid.uuid4())
    bought = data(await client.call_tool("purchase_create", {"quoteId": quote["id"], "idempotencyKey": key}), "purchase_create")
    order = bought["order"]
    expect(order["status"] in ("processing", "fulfilled"), f"order is {order['status']}")
    again = data(await client.call_tool("purchase_create", {"quoteId": quote["id"], "idempotencyKey": key}), "purchase_create replay")
    expect(again["replayed"] and again["order"]["id"] == order["id"], "the same key buys once")
    service_id = order["service_id"]
    # 5. service_get
    service = await wait_active(client, service_id)
    report["host"] = service.get("host")
    # 6. server_restart
    data(await client.call_tool("server_restart", {"serviceId": service_id}), "server_restart")
    await wait_active(client, service_id)
    # 7. server_reinstall
    data(await client.call_tool("server_reinstall", {"serviceId": service_id, "image": "debian-12"}), "server_reinstall")
    await wait_active(client, service_id)
    creds = data(await client.call_tool("credentials_get", {"serviceId": service_id}), "credentials_get")
    expect(creds["type"] == "ssh" and creds["credentials"]["port"], "credentials of the reinstalled machine")
    data(await client.call_tool("lease_terminate", {"serviceId": service_id}), "lease_terminate")
    # The purchase is in the event log, oldest first, and a page continues after its cursor.
    first = data(await client.call_tool("events_list", {"types": ["order.created", "order.paid"], "limit": 1}), "events_list")
    expect([e["type"] for e in first["events"]] == ["order.created"], f"first event: {first}")
    expect(first["events"][0]["data"]["id"] == order["id"], "the event carries the order")
    rest = data(await client.call_tool("events_list", {"after": first["next_cursor"], "types": ["order.paid"]}), "events_list")
    expect([e["type"] for e in rest["events"]] == ["order.paid"], f"after the cursor: {rest}")
    report["order_id"] = order["id"]
    report["service_id"] = service_id
    return report


async def main():
    key = os.environ["STOREFRONT_API_KEY"]
    if os.environ["TRANSPORT"] == "http":
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
        server = streamable_http_client(os.environ["STOREFRONT_URL"].rstrip("/") + "/mcp", http_client=http)
    else:
        server = StdioServerParameters(command=os.environ["STOREFRONT_BIN"], args=["mcp"], env=dict(os.environ))
    async with Client(server) as client:
        report = await flow(client)
    report["transport"] = os.environ["TRANSPORT"]
    print(json.dumps(report))


asyncio.run(main())
