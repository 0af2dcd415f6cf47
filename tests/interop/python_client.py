"""Interop: the official Python MCP SDK client drives codemode-mcp over stdio.

Usage: python_client.py PATH_TO_CODEMODE_MCP
Prints one line per check and exits non-zero on the first failure.
"""

import asyncio
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


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


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
