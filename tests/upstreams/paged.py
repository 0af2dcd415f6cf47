"""A raw stdio MCP server (no SDK) that lists its tools two per page, with cursors, to show
that codemode-mcp follows tools/list pagination. Tools t0..t4 answer their own name."""

import json
import sys

TOOLS = [
    {"name": f"t{i}", "description": f"Tool number {i}.", "inputSchema": {"type": "object", "properties": {}}}
    for i in range(5)
]


def reply(id_, result):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": id_, "result": result}) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    message = json.loads(line)
    method, id_ = message.get("method"), message.get("id")
    if id_ is None:
        continue
    if method == "initialize":
        reply(id_, {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "paged", "version": "1"},
        })
    elif method == "tools/list":
        start = int((message.get("params") or {}).get("cursor") or 0)
        page = {"tools": TOOLS[start:start + 2]}
        if start + 2 < len(TOOLS):
            page["nextCursor"] = str(start + 2)
        reply(id_, page)
    elif method == "tools/call":
        reply(id_, {"content": [{"type": "text", "text": message["params"]["name"]}]})
    elif method == "ping":
        reply(id_, {})
    else:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": "no such method"}}) + "\n")
        sys.stdout.flush()
