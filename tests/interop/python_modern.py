"""Interop: the official Python SDK's `Client` in its default mode (protocol 2026-07-28:
no handshake, no session) and in `mode="legacy"` against `serve --http`, with state on.
Two modern clients never share a `state.*` store: each run without a handle gets a fresh
one, whose handle the result returns, and only that handle opens it again.

Usage: python_modern.py STATE_URL CONFIRM_URL SLOW_URL SLOW_AUDIT_LOG BINARY CONFIRM_CONFIG
(servers whose policy confirms toy.add, the slow one's approvals timing out at once; the
binary and the confirming config for stdio)
Prints one line per check and exits non-zero on the first failure.
"""

import asyncio
import sys

import mcp_types as types
from mcp import Client, StdioServerParameters


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def run(client, code, **extra):
    return client.call_tool("execute_code", {"code": code, **extra})


GET = "return await tools.state.get({ key: 'secret' });"


async def main(url, confirm_url, slow_url, slow_audit, binary, confirm_config):
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
    await listening(slow_url)
    await unanswered(slow_url, slow_audit)
    await over_stdio(binary, confirm_config)
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


def resume(client, code, request_state, answer=ACCEPT, **extra):
    """The retry of an input_required result: the user's answer and the requestState."""
    return client.session.call_tool(
        "execute_code", {"code": code, **extra}, input_responses=answer, request_state=request_state, allow_input_required=True
    )


# Counts its runs in the store it is given, then calls a tool whose name it computes: the
# confirmation can only be asked mid-run, with the count already stored.
COUNTED = """const n = ((await tools.state.get({ key: 'n' })) ?? 0) + 1;
await tools.state.set({ key: 'n', value: n });
const name = 'add';
const { sum } = await tools.toy[name]({ a: 1, b: 2 });
return { n, sum };"""


async def mid_run(client, asked):
    """A confirmation reached mid-run parks the run; the retry resumes it where it stopped."""
    fresh = await run(client, "await tools.state.set({ key: 'n', value: 0 }); return 0;")
    handle = fresh.structured_content["state"]
    asked.clear()
    ran = await run(client, COUNTED, state=handle)
    check(not ran.is_error and ran.structured_content["result"] == {"n": 1, "sum": 3}, f"a confirmation reached mid-run is asked by input_required and the run goes on ({ran.content[0].text[:300]})")
    check(len(asked) == 1 and "tools.toy.add" in asked[0] and '"a":1' in asked[0] and "line 4" in asked[0], f"the user is asked about the call, its arguments and its line ({asked})")
    count = await run(client, "return await tools.state.get({ key: 'n' });", state=handle)
    check(count.structured_content["result"] == 1, "nothing before the call ran twice: the retry resumed the parked run")
    first = await client.session.call_tool("execute_code", {"code": COUNTED, "state": handle}, allow_input_required=True)
    state = getattr(first, "request_state", None)
    check(isinstance(state, str) and state.startswith("cma_"), "a parked run's first leg is an input_required result")
    stolen = await resume(client, "return 'another program';", state)
    check(stolen.is_error and "another program" in stolen.content[0].text, "a parked run's state resumes no other program")
    declined = await resume(client, COUNTED, state, {"confirm": {"action": "decline"}}, state=handle)
    text = declined.content[0].text
    check(declined.is_error and "declined" in text and declined.structured_content["error"]["kind"] == "policy", f"a declined mid-run call fails with kind policy ({text[:300]})")
    count = await run(client, "return await tools.state.get({ key: 'n' });", state=handle)
    check(count.structured_content["result"] == 2, "the declined run went on from where it was parked, once")
    replay = await resume(client, COUNTED, state)
    check(replay.is_error and "names no question" in replay.content[0].text, "a parked run's state is used once")


def execute_code_description(listed):
    return next(t.description for t in listed.tools if t.name == "execute_code")


async def listening(url):
    """subscriptions/listen delivers tools/list_changed to a modern client, and the list's
    caching hints never let the SDK's cache serve the old execute_code description."""
    async with Client(url) as client:
        before = await client.list_tools()
        check(before.ttl_ms == 0 and before.cache_scope == "private", f"tools/list may not be cached ({before.ttl_ms}, {before.cache_scope})")
        check("extra(" not in execute_code_description(before), "the description has no tools.toy.extra yet")
        async with client.listen(tools_list_changed=True, resources_list_changed=True) as subscription:
            check(subscription.honored.tools_list_changed and subscription.honored.resources_list_changed, f"the server honours the filter ({subscription.honored})")
            grown = await run(client, "return await tools.toy.grow();")
            check(not grown.is_error, f"the upstream adds a tool ({grown.content[0].text[:200]})")
            seen = set()
            async for event in subscription:
                seen.add(type(event).__name__)
                if {"ToolsListChanged", "ResourcesListChanged"} <= seen:
                    break
            check({"ToolsListChanged", "ResourcesListChanged"} <= seen, f"both changes arrive on the stream ({seen})")
        after = await client.list_tools()
        check("extra(" in execute_code_description(after), "the next tools/list shows the new tool: nothing stale was served")
        prompts = await client.list_prompts()
        check(prompts.ttl_ms and prompts.ttl_ms > 0, f"the fixed prompt list may be cached ({prompts.ttl_ms})")


async def over_stdio(binary, config):
    """The same modern client over stdio: one client per process, whose store is implicit;
    a confirmation reached mid-run parks the run there too."""
    server = StdioServerParameters(command=binary, args=["serve", "--config", config], env={"CODEMODE_LOG": "warn"})
    asked = []
    async with Client(server, elicitation_callback=answering("accept", asked)) as client:
        stored = await run(client, "await tools.state.set({ key: 'n', value: 1 }); return 'stored';")
        check(not stored.is_error and "state" not in (stored.structured_content or {}), f"stdio: a modern client's store is the process's, no handle needed ({stored.content[0].text[:200]})")
        read = await run(client, "return await tools.state.get({ key: 'n' });")
        check(read.structured_content["result"] == 1, "stdio: a later run reads it")
        mid = await run(client, "const name = 'add';\nreturn (await tools.toy[name]({ a: 2, b: 3 })).sum;")
        check(not mid.is_error and mid.structured_content["result"] == 5 and len(asked) == 1, f"stdio: a mid-run confirmation parks the run and the retry resumes it ({mid.content[0].text[:200]}, {asked})")


async def unanswered(url, audit_log):
    """Nobody answering within codemode.policy.approvalTimeoutMs refuses the parked call."""
    code = "const name = 'add';\nreturn await tools.toy[name]({ a: 1, b: 2 });"
    async with Client(url, elicitation_callback=answering("accept", [])) as client:
        first = await client.session.call_tool("execute_code", {"code": code}, allow_input_required=True)
        state = getattr(first, "request_state", None)
        check(isinstance(state, str), "the parked run asks")
        # The server's own record that the run ended, not a guess at how long that takes.
        for _ in range(1200):
            try:
                with open(audit_log, encoding="utf-8") as log:
                    if "nobody answered" in log.read():
                        break
            except FileNotFoundError:
                pass
            await asyncio.sleep(0.05)
        late = await resume(client, code, state)
        text = late.content[0].text
        check(late.is_error and "nobody answered" in text and "approvalTimeoutMs" in text and late.structured_content["error"]["kind"] == "policy", f"an answer after the approval timeout finds the call refused, saying nobody answered ({text[:300]})")

    async def never(context, params):
        await asyncio.Event().wait()

    async with Client(url, mode="legacy", elicitation_callback=never) as client:
        ran = await run(client, code)
        text = ran.content[0].text
        check(ran.is_error and "nobody answered" in text and ran.structured_content["error"]["kind"] == "policy", f"a legacy client's elicitation nobody answers ends at the approval timeout too ({text[:300]})")


async def confirmations(url):
    asked = []
    async with Client(url, elicitation_callback=answering("accept", asked)) as client:
        ran = await run(client, ADD)
        check(not ran.is_error and ran.structured_content["result"] == 3, f"a confirmed tool runs once the user accepts, asked by input_required ({ran.content})")
        check(len(asked) == 1 and "tools.toy.add" in asked[0], f"the user was asked once, about the tool ({asked})")
        await mid_run(client, asked)
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
    asyncio.run(main(*sys.argv[1:7]))
