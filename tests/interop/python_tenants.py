"""Interop: least privilege and quotas per principal, through the official Python SDK's
`Client` in its default mode (2026-07-28) and in `mode="legacy"`, over streamable HTTP
with named bearer tokens: alice sees and calls only the tool her overlay allows (the
others are absent from her declarations, her search and her errors), bob sees all but
that one; alice's executions past her quota are refused with kind `quota`, saying when it
frees up, while bob runs on.

Usage: python_tenants.py URL ALICE BOB (a server whose overlays give alice toy.add alone
and 4 executions per minute, and deny bob toy.add)
Prints one line per check and exits non-zero on the first failure.
"""

import asyncio
import sys

import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def text_of(result):
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


def client(url, token, mode):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    return Client(streamable_http_client(url, http_client=http), mode=mode)


async def description(session):
    listed = await session.list_tools()
    return next(tool.description for tool in listed.tools if tool.name == "execute_code")


async def main(url, alice, bob):
    for mode in ["auto", "legacy"]:
        async with client(url, alice, mode) as session:
            described = await description(session)
            check("function add(" in described and "function slow(" not in described, f"{mode}: alice's declarations hold toy.add alone")
            found = await session.call_tool("search_tools", {"query": "", "detail": "names", "limit": 200})
            check("toy.add" in text_of(found) and "toy.slow" not in text_of(found), f"{mode}: so does her search")
            added = await session.call_tool("execute_code", {"code": "return (await tools.toy.add({ a: 2, b: 3 })).sum;"})
            check(added.structured_content["result"] == 5, f"{mode}: she calls toy.add")
            hidden = await session.call_tool("execute_code", {"code": "return await tools.toy.slow({ ms: 1 });"})
            message = hidden.structured_content["error"]["message"]
            check(hidden.is_error and "does not exist" in message and "polic" not in message, f"{mode}: toy.slow does not exist for her ({message[:120]})")
        async with client(url, bob, mode) as session:
            described = await description(session)
            check("function add(" not in described and "function slow(" in described, f"{mode}: bob sees all but toy.add")
    # alice has made 4 executions this minute (2 per mode): her quota.
    async with client(url, alice, "auto") as session:
        refused = await session.call_tool("execute_code", {"code": "return 1"})
        error = refused.structured_content["error"]
        check(refused.is_error and error["kind"] == "quota" and "frees up in" in error["message"], f"modern: alice's fifth execution is refused for her quota ({error['message'][:120]})")
    async with client(url, alice, "legacy") as session:
        refused = await session.call_tool("execute_code", {"code": "return 1"})
        check(refused.structured_content["error"]["kind"] == "quota", "legacy: and so is the next")
    async with client(url, bob, "auto") as session:
        ran = await session.call_tool("execute_code", {"code": "return 6 * 7"})
        check(ran.structured_content["result"] == 42, "bob's windows are his own")
    print("ok: done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
