"""A raw stdio MCP server (no SDK) with 220 tools across many topics, too many for the
`execute_code` description to declare: a program finds the one it needs with
tools.$search. `convert_currency` converts at a fixed rate of 2; every other tool echoes
its name and arguments."""

import json
import sys

TOPICS = ["weather", "calendar", "mail", "billing", "search", "maps", "files", "chat",
          "tickets", "deploy", "metrics", "users"]
VERBS = ["list", "get", "create", "update", "delete", "archive", "export", "import",
         "count", "watch", "share", "tag", "move", "copy", "lock", "unlock", "sync", "rank"]

TOOLS = [{
    "name": "convert_currency",
    "description": "Converts an amount of money from one currency to another at today's rate.",
    "inputSchema": {
        "type": "object",
        "properties": {
            "amount": {"type": "number"},
            "from": {"type": "string"},
            "to": {"type": "string"},
        },
        "required": ["amount", "from", "to"],
    },
}]
for topic in TOPICS:
    for verb in VERBS:
        if len(TOOLS) == 220:
            break
        TOOLS.append({
            "name": f"{topic}_{verb}",
            "description": f"{verb.capitalize()}s {topic} items in the {topic} service of the"
                           " workspace, with paging, filters, and only the fields the caller asks for.",
            "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}},
        })


def write(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    message = json.loads(line)
    method, id_ = message.get("method"), message.get("id")
    if id_ is None:
        continue
    if method == "initialize":
        write({"jsonrpc": "2.0", "id": id_, "result": {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "wide", "version": "1"},
        }})
    elif method == "tools/list":
        write({"jsonrpc": "2.0", "id": id_, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name = message["params"]["name"]
        args = message["params"].get("arguments") or {}
        if name == "convert_currency":
            value = {"amount": args["amount"] * 2, "currency": args["to"]}
        else:
            value = {"tool": name, "args": args}
        write({"jsonrpc": "2.0", "id": id_, "result": {
            "content": [{"type": "text", "text": json.dumps(value)}],
        }})
    else:
        write({"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": method}})
