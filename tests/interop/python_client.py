"""Interop: the official Python MCP SDK client drives codemode-mcp over stdio, then over
streamable HTTP and legacy SSE (`serve --http`).

Usage: python_client.py PATH_TO_CODEMODE_MCP
Prints one line per check and exits non-zero on the first failure.
"""

import asyncio
import os
import re
import subprocess
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


async def main(binary):
    params = StdioServerParameters(command=binary, args=["serve"], env={"CODEMODE_LOG": "warn"})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            check(init.server_info.name == "codemode-mcp", "server identifies as codemode-mcp")
            check("execute_code" in (init.instructions or ""), "instructions mention execute_code")

            tools = await session.list_tools()
            names = [tool.name for tool in tools.tools]
            check(names == ["execute_code", "search_tools"], f"tools/list lists execute_code and search_tools ({names})")
            tool = tools.tools[0]
            check(tool.output_schema is not None, "execute_code declares an outputSchema")

            ok = await session.call_tool(
                "execute_code",
                {"code": "const xs: number[] = [1, 2, 3];\nconsole.log('summing');\nreturn xs.reduce((a, b) => a + b, 0);"},
            )
            check(not ok.is_error, "a TypeScript program succeeds")
            check(ok.structured_content["result"] == 6, "its result is in structuredContent")
            check(ok.structured_content["logs"] == [{"level": "log", "message": "summing"}], "its logs are captured")
            check(ok.content[0].text.startswith("6"), "the text block leads with the result")

            failed = await session.call_tool("execute_code", {"code": "const a = 1;\nthrow new TypeError('bad');"})
            check(failed.is_error, "a throwing program is an isError result")
            error = failed.structured_content["error"]
            check(error["kind"] == "runtime" and error["line"] == 2, f"with kind and line ({error})")

            slow = await session.call_tool("execute_code", {"code": "while (true) {}", "timeoutMs": 200})
            check(slow.is_error and slow.structured_content["error"]["kind"] == "timeout", "timeouts are reported")

            again = await session.call_tool("execute_code", {"code": "return 'still serving'"})
            check(again.structured_content["result"] == "still serving", "the server keeps serving")


async def over_http(binary):
    """The same session over both HTTP transports of one `serve --http` process."""
    server = subprocess.Popen(
        [binary, "serve", "--http", "127.0.0.1:0"],
        env={**os.environ, "CODEMODE_LOG": "info"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = None
        for line in server.stderr:
            found = re.search(r"listening on (http://[0-9.]+:[0-9]+)", line)
            if found:
                base = found.group(1)
                break
        check(base is not None, "serve --http logs where it listens")
        transports = [
            ("streamable HTTP", lambda: streamable_http_client(base + "/mcp")),
            ("legacy SSE", lambda: sse_client(base + "/sse")),
        ]
        for name, connect in transports:
            async with connect() as (read, write):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    check(init.server_info.name == "codemode-mcp", f"{name}: initialize")
                    tools = await session.list_tools()
                    names = [tool.name for tool in tools.tools]
                    check(names == ["execute_code", "search_tools"], f"{name}: tools/list ({names})")
                    ran = await session.call_tool(
                        "execute_code",
                        {"code": "console.log('over http');\nreturn { sum: [1, 2, 3].reduce((a, b) => a + b) };"},
                    )
                    check(not ran.is_error and ran.structured_content["result"] == {"sum": 6}, f"{name}: a program's result")
                    check(ran.structured_content["logs"][0]["message"] == "over http", f"{name}: its logs")
                    failed = await session.call_tool("execute_code", {"code": "\n  null.x"})
                    error = failed.structured_content["error"]
                    check(failed.is_error and error["line"] == 2, f"{name}: a positioned error ({error})")
    finally:
        server.terminate()
        code = server.wait(timeout=15)
    check(code == 0, f"SIGTERM ends serve --http with exit code 0 (got {code})")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
    asyncio.run(over_http(sys.argv[1]))
