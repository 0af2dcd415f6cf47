"""An MCP server over HTTP with one tool, big, that answers `mb` MiB of text: an upstream
answer past codemode-mcp's cap. Usage: big_http.py MODE, MODE one of `stream`
(streamable HTTP answering on an SSE stream), `json` (streamable HTTP answering with a
JSON body) or `sse` (the legacy HTTP+SSE transport). It listens on a free port of its
own choosing and prints it as its first line."""

import socket
import sys

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
    mode = sys.argv[1]
    if mode == "sse":
        app = server.sse_app()
    else:
        app = server.streamable_http_app(json_response=mode == "json")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listener])
