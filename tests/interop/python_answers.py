"""Interop: what a model reads of an execution, through the official Python SDK's `Client`
in its default mode (2026-07-28) and in `mode="legacy"`, over streamable HTTP and (modern)
stdio: every answer fits the output budget with the notice first and links the whole
output, which its reader can fetch; a dropped failure, a missing return, an import and a
down server each say what to do; a program finds a tool it was not shown with
tools.$search and calls it.

Usage: python_answers.py URL BINARY CONFIG OWNED_URL ALICE BOB (a server whose config has
toy, wide (220 tools) and time (never starts); a server with the bearer tokens ALICE and
BOB)
Prints one line per check and exits non-zero on the first failure.
"""

import asyncio
import sys

import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

BUDGET = 24_000


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def run(client, code, **extra):
    return client.call_tool("execute_code", {"code": code, **extra})


def text_of(result):
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def answers(client, label):
    for what, code in [
        ("200,000 log lines", "for (let i = 0; i < 200000; i++) console.log('line ' + i);\nreturn 'done';"),
        ("a 20 MB result", "return 'x'.repeat(20_000_000);"),
        ("a 10,000-element array", "return Array.from({ length: 10000 }, (_, i) => ({ i, name: 'item ' + i }));"),
    ]:
        result = await run(client, code)
        text = text_of(result)
        structured = result.structured_content or {}
        check(len(text) <= BUDGET and text.startswith("[output truncated:"), f"{label}: {what} answers {len(text)} characters, the notice first")
        check(next(iter(structured), None) == "truncated", f"{label}: {what}: the structured content says so first too")
        links = [block for block in result.content if isinstance(block, types.ResourceLink)]
        check(len(links) == 1 and str(links[0].uri).startswith("codemode://executions/"), f"{label}: {what}: the whole output is linked")
        whole = await client.read_resource(str(links[0].uri))
        check(sum(len(c.text) for c in whole.contents) > BUDGET, f"{label}: {what}: its reader fetches the whole output")
    error = await run(client, "throw new Error('x'.repeat(40_000_000));")
    check(error.is_error and len(text_of(error)) <= BUDGET and "more bytes cut" in text_of(error), f"{label}: a 40 MB error is cut where it is made ({len(text_of(error))} characters)")
    small = await run(client, "return await tools.toy.add({ a: 2, b: 3 });", maxOutputChars=50_000_000)
    check(small.structured_content["result"] == {"sum": 5}, f"{label}: a small answer stays whole (and a budget above the cap is only the cap)")

    dropped = await run(client, "const sum = await tools.toy.add({ a: 1, b: 2 });\ntools.toy.fail({});\nawait tools.toy.add({ a: 3, b: 4 });\nreturn sum;")
    hints = (dropped.structured_content or {}).get("hints") or []
    check(len(hints) == 1 and hints[0].startswith("tools.toy.fail failed at 2:") and "did not await it" in hints[0], f"{label}: a failure nobody awaited is named ({hints})")
    silent = await run(client, "const rows = await tools.toy.add({ a: 1, b: 1 });\nconsole.log(rows);")
    check("hint: the result is null" in text_of(silent), f"{label}: a program that returns nothing is told to return")
    imported = await run(client, "import fs from 'fs';\nreturn 1;")
    check("not a module" in text_of(imported), f"{label}: an import says a program is no module")
    down = await run(client, "return await tools.time.now({});")
    check("its server \"time\" (mcpServers.time) is down since " in text_of(down), f"{label}: a down server says so, and since when")
    grown = await run(client, "const out = [];\nfor (const n of [1, 2]) out.push({ n });\nreturn out.length;", typecheck=True)
    check(not grown.is_error and grown.structured_content["result"] == 2, f"{label}: the type check lets an array grow ({text_of(grown)[:200]})")
    node = await run(client, "return process.env.HOME;", typecheck=True)
    check(node.is_error and "not Node.js" in text_of(node) and "@types/node" not in text_of(node), f"{label}: process is answered with what the sandbox has")
    found = await run(client, "const [hit] = await tools.$search('convert currency');\nreturn await tools[hit.namespace][hit.tool]({ amount: 4, from: 'EUR', to: 'USD' });")
    check(found.structured_content["result"] == {"amount": 8, "currency": "USD"}, f"{label}: a program finds a tool it was not shown and calls it")


async def owners(url, alice, bob):
    """A whole output is its owner's: another token holding the URI reads nothing."""
    def client(token, **extra):
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        return Client(streamable_http_client(url, http_client=http), **extra)

    for mode in ["auto", "legacy"]:
        async with client(alice, mode=mode) as owner:
            cut = await run(owner, "return Array.from({ length: 10000 }, (_, i) => ({ i }));")
            link = [block for block in cut.content if isinstance(block, types.ResourceLink)][0]
            whole = await owner.read_resource(str(link.uri))
            check(sum(len(c.text) for c in whole.contents) > BUDGET, f"{mode}: its owner reads the whole output")
        async with client(bob, mode=mode) as other:
            try:
                await other.read_resource(str(link.uri))
                check(False, f"{mode}: another token reads nothing of it")
            except Exception as error:
                check("no output is kept here" in str(error), f"{mode}: another token holding the URI reads nothing of it ({str(error)[:80]})")


async def main(url, binary, config, owned_url, alice, bob):
    await owners(owned_url, alice, bob)
    async with Client(url) as modern:
        await answers(modern, "modern http")
    async with Client(url, mode="legacy") as legacy:
        await answers(legacy, "legacy http")
    server = StdioServerParameters(command=binary, args=["serve", "--config", config], env={"CODEMODE_LOG": "warn"})
    async with Client(server) as stdio:
        await answers(stdio, "modern stdio")
    print("ok: done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
