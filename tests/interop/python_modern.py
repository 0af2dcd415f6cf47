"""Interop: the official Python SDK's `Client` in its default mode (protocol 2026-07-28:
no handshake, no session) and in `mode="legacy"` against `serve --http`, with state on.
Two modern clients never share a `state.*` store: each run without a handle gets a fresh
one, whose handle the result returns, and only that handle opens it again.

Usage: python_modern.py URL
Prints one line per check and exits non-zero on the first failure.
"""

import asyncio
import sys

from mcp import Client


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def run(client, code, **extra):
    return client.call_tool("execute_code", {"code": code, **extra})


GET = "return await tools.state.get({ key: 'secret' });"


async def main(url):
    async with Client(url) as alice:
        stored = await run(alice, "await tools.state.set({ key: 'secret', value: 'alice-token' });\nreturn 'stored';")
        check(not stored.is_error, f"a modern client runs a program ({stored.content})")
        handle = (stored.structured_content or {}).get("state")
        check(isinstance(handle, str) and handle.startswith("cms_"), f"its result names the store's handle ({handle})")
        check(handle in stored.content[0].text, "the text a model reads names it too")
        plain = await run(alice, "return 1 + 1;")
        check("state" not in (plain.structured_content or {}), "a run that uses no state names no handle")

    async with Client(url) as bob:
        read = await run(bob, GET)
        check(read.structured_content["result"] is None, "another modern client reads nothing of it")
        again = await run(bob, GET, state=handle)
        check(again.structured_content["result"] == "alice-token", "the handle opens the store again (no token: the handle alone names it)")
        forged = handle[:-4] + ("AAAA" if not handle.endswith("AAAA") else "BBBB")
        guessed = await run(bob, GET, state=forged)
        check(guessed.structured_content["result"] is None, "a changed handle opens an empty store, like any unknown one")
        bad = await run(bob, GET, state="alice")
        check(bad.is_error and "not a state handle" in bad.content[0].text, "a malformed handle is refused, saying what to pass")

    async with Client(url, mode="legacy") as legacy:
        await run(legacy, "await tools.state.set({ key: 'secret', value: 'legacy' }); return 1;")
        kept = await run(legacy, GET)
        check(kept.structured_content["result"] == "legacy", "a legacy session keeps its own store implicitly")
        check("state" not in kept.structured_content, "and needs no handle")
    async with Client(url, mode="legacy") as other:
        read = await run(other, GET)
        check(read.structured_content["result"] is None, "another legacy session reads nothing of it")
    print("ok: done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
