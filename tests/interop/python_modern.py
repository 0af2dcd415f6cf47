"""Interop: the official Python SDK's `Client` in its default mode (protocol 2026-07-28:
no handshake, no session) and in `mode="legacy"` against `serve --http`, with state on.
Two modern clients never share a `state.*` store: each run without a handle gets a fresh
one, whose handle the result returns, and only that handle opens it again.

Usage: python_modern.py STATE_URL CONFIRM_URL (a server whose policy confirms toy.add)
Prints one line per check and exits non-zero on the first failure.
"""

import asyncio
import sys

import mcp_types as types
from mcp import Client


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def run(client, code, **extra):
    return client.call_tool("execute_code", {"code": code, **extra})


GET = "return await tools.state.get({ key: 'secret' });"


async def main(url, confirm_url):
    async with Client(url) as alice:
        stored = await run(alice, "await tools.state.set({ key: 'secret', value: 'alice-token' });\nreturn 'stored';")
        check(not stored.is_error, f"a modern client runs a program ({stored.content})")
        handle = (stored.structured_content or {}).get("state")
        check(isinstance(handle, str) and handle.startswith("cms_"), f"its result names the store's handle ({handle})")
        check(handle in stored.content[0].text, "the text a model reads names it too")
        plain = await run(alice, "return 1 + 1;")
        check("state" not in (plain.structured_content or {}), "a run that uses no state names no handle")
        saved = await alice.call_tool("save_skill", {
            "name": "remember",
            "description": "Stores its argument under 'note'.",
            "code": "await tools.state.set({ key: 'note', value: args.text }); return 'kept';",
        })
        check(not saved.is_error, f"a skill that uses state is saved ({saved.content})")
        through = await run(alice, "return await skills.remember({ text: 'via a skill' });")
        skill_handle = (through.structured_content or {}).get("state")
        check(isinstance(skill_handle, str) and skill_handle.startswith("cms_"), f"a run whose skill used state names the store's handle ({through.content})")
        noted = await run(alice, "return await tools.state.get({ key: 'note' });", state=skill_handle)
        check(noted.structured_content["result"] == "via a skill", "and that handle opens what the skill stored")

    async with Client(url) as bob:
        read = await run(bob, GET)
        check(not read.is_error and read.structured_content["result"] is None, "another modern client reads nothing of it")
        again = await run(bob, GET, state=handle)
        check(again.structured_content["result"] == "alice-token", "the handle opens the store again (no token: the handle alone names it)")
        forged = handle[:-4] + ("AAAA" if not handle.endswith("AAAA") else "BBBB")
        guessed = await run(bob, GET, state=forged)
        check(guessed.is_error and "not a state handle this server issued" in guessed.content[0].text, "a changed handle is refused")
        chosen = await run(bob, GET, state="cms_" + "A" * 43)
        check(chosen.is_error and "not a state handle this server issued" in chosen.content[0].text, "a handle the client chose is refused: an injected program cannot pick a store to read later")
        bad = await run(bob, GET, state="alice")
        check(bad.is_error and "not a state handle" in bad.content[0].text, "a malformed handle is refused, saying what to pass")

    async with Client(url, mode="legacy") as legacy:
        await run(legacy, "await tools.state.set({ key: 'secret', value: 'legacy' }); return 1;")
        kept = await run(legacy, GET)
        check(not kept.is_error and kept.structured_content["result"] == "legacy", "a legacy session keeps its own store implicitly")
        check("state" not in kept.structured_content, "and needs no handle")
    async with Client(url, mode="legacy") as other:
        read = await run(other, GET)
        check(not read.is_error and read.structured_content["result"] is None, "another legacy session reads nothing of it")
    await confirmations(confirm_url)
    print("ok: done", flush=True)


ADD = "return (await tools.toy.add({ a: 1, b: 2 })).sum;"


def answering(action, asked):
    async def callback(context, params):
        asked.append(params.message)
        if action == "accept":
            return types.ElicitResult(action="accept", content={"confirm": True})
        return types.ElicitResult(action=action)

    return callback


ACCEPT = {"confirm": {"action": "accept", "content": {"confirm": True}}}


def resume(client, code, state):
    """The retry of an input_required result: the user's yes and the requestState."""
    return client.session.call_tool(
        "execute_code", {"code": code}, input_responses=ACCEPT, request_state=state, allow_input_required=True
    )


async def confirmations(url):
    asked = []
    async with Client(url, elicitation_callback=answering("accept", asked)) as client:
        ran = await run(client, ADD)
        check(not ran.is_error and ran.structured_content["result"] == 3, f"a confirmed tool runs once the user accepts, asked by input_required ({ran.content})")
        check(len(asked) == 1 and "tools.toy.add" in asked[0], f"the user was asked once, about the tool ({asked})")
        mid = await run(client, "const name = 'add';\nreturn await tools.toy[name]({ a: 1, b: 2 });")
        check(mid.is_error and "mid-run" in mid.content[0].text, f"a confirmation reached mid-run is refused, saying how to have it asked first ({mid.content[0].text[:300]})")
        forged = await resume(client, ADD, "cma_" + "A" * 43)
        check(forged.is_error and "names no question" in forged.content[0].text, "a made-up requestState resumes nothing")
        first = await client.session.call_tool("execute_code", {"code": ADD}, allow_input_required=True)
        state = getattr(first, "request_state", None)
        check(isinstance(state, str) and state.startswith("cma_"), "the first leg is an input_required result with a requestState")
        other = await resume(client, "return 'another program';", state)
        check(other.is_error and "another program" in other.content[0].text, "a requestState for one program resumes no other")
        answered = await resume(client, ADD, state)
        check(not answered.is_error and answered.structured_content["result"] == 3, "the wrong program's attempt did not spend the question")
        replay = await resume(client, ADD, state)
        check(replay.is_error and "names no question" in replay.content[0].text, "a requestState is used once: a replay after the run runs nothing")
    async with Client(url, elicitation_callback=answering("decline", [])) as client:
        ran = await run(client, ADD)
        check(ran.is_error and "declined" in ran.content[0].text, "a declined confirmation runs nothing and says so")
    async with Client(url) as client:
        ran = await run(client, ADD)
        check(ran.is_error and "cannot be asked" in ran.content[0].text and "codemode.policy" in ran.content[0].text, f"a modern client that cannot be asked gets a clear refusal ({ran.content[0].text[:300]})")
    async with Client(url, mode="legacy", elicitation_callback=answering("accept", [])) as client:
        ran = await run(client, ADD)
        check(not ran.is_error and ran.structured_content["result"] == 3, "a legacy client is asked by elicitation, as before")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
