"""A raw stdio MCP server (no SDK) with one tool, big, that answers `mb` MiB of text, its
`id` after the result as the TypeScript SDK writes it when `first` is false, before it as
the Python SDK does when true: an upstream answer past codemode-mcp's cap."""

import json
import sys


def write(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


TOOL = {
    "name": "big",
    "description": "Answers mb MiB of text.",
    "inputSchema": {
        "type": "object",
        "properties": {"mb": {"type": "number"}, "first": {"type": "boolean"}},
        "required": ["mb"],
    },
}

for line in sys.stdin:
    message = json.loads(line)
    method, id_ = message.get("method"), message.get("id")
    if id_ is None:
        continue
    if method == "initialize":
        write({"jsonrpc": "2.0", "id": id_, "result": {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "big", "version": "1"},
        }})
    elif method == "tools/list":
        write({"jsonrpc": "2.0", "id": id_, "result": {"tools": [TOOL]}})
    elif method == "tools/call":
        args = message["params"].get("arguments") or {}
        result = {"content": [{"type": "text", "text": "x" * int(args["mb"] * 1024 * 1024)}]}
        if args.get("first"):
            write({"jsonrpc": "2.0", "id": id_, "result": result})
        else:
            write({"result": result, "jsonrpc": "2.0", "id": id_})
    elif method == "ping":
        write({"jsonrpc": "2.0", "id": id_, "result": {}})
    else:
        write({"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": "no such method"}})
