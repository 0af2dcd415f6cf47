"""Interop: the codemode-mcp of the Python wheel, started as MCP configs start servers
(`codemode-mcp` from a venv that pip installed it into, or `uvx --from WHEEL
codemode-mcp`), answers the official Python client over stdio in its default mode and in
legacy mode.

Usage: python_wheel.py COMMAND pip | python_wheel.py UVX uvx WHEEL
Prints one line per check and exits non-zero on the first failure.
"""

import asyncio
import sys

from mcp import Client, StdioServerParameters


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


async def main(command, how, wheel=None):
    if how == "uvx":
        args = ["--offline", "--from", wheel, "codemode-mcp", "serve"]
    else:
        args = ["serve"]
    server = StdioServerParameters(command=command, args=args, env={"CODEMODE_LOG": "warn", "PATH": "/usr/bin:/bin"})
    for mode in ["modern", "legacy"]:
        extra = {} if mode == "modern" else {"mode": "legacy"}
        async with Client(server, **extra) as client:
            listed = await client.list_tools()
            names = [tool.name for tool in listed.tools]
            check("execute_code" in names, f"{how}, {mode}: the installed server lists execute_code ({names})")
            ran = await client.call_tool("execute_code", {"code": "return [1, 2, 3].map((n) => n * n);"})
            check(not ran.is_error and ran.structured_content["result"] == [1, 4, 9], f"{how}, {mode}: it runs a program")
    print("ok: done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
