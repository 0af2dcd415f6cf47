"""An MCP server over HTTP with one tool, big, that answers `mb` MiB of text: an upstream
answer past codemode-mcp's cap. Usage: big_http.py PORT MODE, MODE one of `stream`
(streamable HTTP answering on an SSE stream), `json` (streamable HTTP answering with a
JSON body) or `sse` (the legacy HTTP+SSE transport)."""

import sys

import anyio
import uvicorn

from mcp.server.mcpserver import MCPServer

server = MCPServer("big-http")


@server.tool()
def big(mb: float) -> str:
    """Answers mb MiB of text."""
    return "x" * int(mb * 1024 * 1024)


@server.tool()
def small() -> str:
    """Answers "small"."""
    return "small"


if __name__ == "__main__":
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "sse":
        app = server.sse_app()
    else:
        app = server.streamable_http_app(json_response=mode == "json")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
