"""A small upstream MCP server for the tests: what the reference servers cannot show.

Tools: add (structured output), slow (sleeps), fail (isError), crash (exits the process),
text (plain, non-JSON text), look-up (a schema with an enum and a nested object), grow
(registers a new tool, extra, and sends notifications/tools/list_changed), traceparent
(answers the W3C trace context the call's _meta carried).
"""

import asyncio
import os
import sys
from typing import Literal

from pydantic import BaseModel
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("toy")


class Sum(BaseModel):
    sum: int


@server.tool()
def add(a: int, b: int) -> Sum:
    """Add two integers."""
    return Sum(sum=a + b)


@server.tool()
async def slow(ms: int) -> str:
    """Wait `ms` milliseconds, then answer "done"."""
    await asyncio.sleep(ms / 1000)
    return "done"


@server.tool()
def fail(reason: str) -> str:
    """Always fails with `reason`."""
    raise ValueError(reason)


@server.tool()
def crash() -> str:
    """Exit the server process at once."""
    sys.stderr.write("toy: crashing on request\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
def text() -> str:
    """Answer plain text."""
    return "just some words"


class Filter(BaseModel):
    colour: Literal["red", "green"]
    limit: int = 10


@server.tool(name="look-up")
def look_up(filter: Filter) -> dict:
    """Look things up by colour."""
    return {"colour": filter.colour, "limit": filter.limit, "pid": os.getpid()}


@server.tool()
def traceparent(ctx: Context) -> str:
    """Answer the W3C traceparent the call's _meta carried ("" when none)."""
    return (ctx.request_context.meta or {}).get("traceparent", "")


def extra() -> str:
    """A tool that exists only after grow."""
    return "extra"


@server.tool()
async def grow(ctx: Context) -> str:
    """Register the tool `extra` and announce the change."""
    server.add_tool(extra, name="extra")
    await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    server.run()
