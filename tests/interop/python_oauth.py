"""Interop: the official Python SDK's OAuth client (client credentials) against this server
as a resource server, with oidc-provider as the authorization server, in the default mode
(2026-07-28) and in `mode="legacy"`: the 401 sends the client to the Protected Resource
Metadata, the client gets a token for this resource from the issuer, and runs a program;
and over legacy HTTP+SSE, whose 401 names the metadata of `/sse`.

Usage: python_oauth.py URL ISSUER
Prints one line per check and exits non-zero on the first failure.
"""

import asyncio
import sys

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


class Memory:
    """Token storage for one client, in memory."""

    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client):
        self.client = client


async def main(url, issuer):
    for mode in ("modern", "legacy"):
        storage = Memory()
        provider = ClientCredentialsOAuthProvider(
            server_url=url,
            storage=storage,
            client_id="agent-a",
            client_secret="secret-a-0123456789",
            issuer=issuer,
        )
        extra = {} if mode == "modern" else {"mode": "legacy"}
        async with httpx2.AsyncClient(auth=provider) as http:
            async with Client(streamable_http_client(url, http_client=http), **extra) as client:
                result = await client.call_tool("execute_code", {"code": "return 6 * 7"})
                text = "".join(b.text for b in result.content if isinstance(b, types.TextContent))
                check(not result.is_error and "42" in text, f"{mode}: a program ran with the issuer's token: {text[:200]}")
        check(storage.tokens is not None and "mcp:execute" in (storage.tokens.scope or ""),
              f"{mode}: the token has the scope the server's challenge named")
    sse_url = url.removesuffix("/mcp") + "/sse"
    provider = ClientCredentialsOAuthProvider(
        server_url=sse_url,
        storage=Memory(),
        client_id="agent-a",
        client_secret="secret-a-0123456789",
        issuer=issuer,
    )
    async with Client(sse_client(sse_url, auth=provider), mode="legacy") as client:
        result = await client.call_tool("execute_code", {"code": "return 6 * 7"})
        text = "".join(b.text for b in result.content if isinstance(b, types.TextContent))
        check(not result.is_error and "42" in text, f"legacy SSE: a program ran with the issuer's token for /sse: {text[:200]}")
    print("ok: done", flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2]))
