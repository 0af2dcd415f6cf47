// Interop: the official TypeScript SDK v2 client (@modelcontextprotocol/client) in its
// modern mode (protocol 2026-07-28: server/discover, no handshake, per-request _meta,
// input_required) drives codemode-mcp over stdio and streamable HTTP.
//
// Usage: NODE_PATH=DIR/node_modules node typescript_modern.mjs BINARY CONFIG URL
// (CONFIG enables state and confirms toy.add; `BINARY serve --config CONFIG` is spawned
// for stdio, URL is the /mcp of `serve --http` with the same config)
// Prints one line per check and exits non-zero on the first failure.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// ESM resolution ignores NODE_PATH: import the package's ESM entry points by path, as its
// package.json `exports` names them.
async function importFrom(name, subpath) {
  const dir = join(process.env.NODE_PATH, name);
  const { exports } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  return import(pathToFileURL(join(dir, exports[subpath].import.default)).href);
}

const { Client, StreamableHTTPClientTransport } = await importFrom("@modelcontextprotocol/client", ".");
const { StdioClientTransport } = await importFrom("@modelcontextprotocol/client", "./stdio");

const [binary, config, url] = process.argv.slice(2);
const MODERN = "2026-07-28";

function check(condition, what) {
  if (!condition) {
    console.log(`FAIL: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const transports = {
  stdio: () => new StdioClientTransport({ command: binary, args: ["serve", "--config", config], env: { CODEMODE_LOG: "warn" } }),
  "streamable HTTP": () => new StreamableHTTPClientTransport(new URL(url)),
};

// Notes every message `transport` sends and receives in `wire` ({ out } or { in }). It
// patches the instance, not the class: the SDK probes stdio on a sibling process only for
// its own StdioClientTransport (that probe is not recorded).
function recorded(transport, wire) {
  const send = transport.send.bind(transport);
  transport.send = (message, options) => {
    wire.push({ out: message });
    return send(message, options);
  };
  let handler;
  Object.defineProperty(transport, "onmessage", {
    configurable: true,
    get: () => handler && ((message, extra) => {
      wire.push({ in: message });
      handler(message, extra);
    }),
    set: (h) => {
      handler = h;
    },
  });
  return transport;
}

// A client in `mode` whose elicitation handler answers `action`, noting each question.
async function connect(name, mode, action, asked = [], wire = []) {
  const client = new Client(
    { name: "typescript-modern-interop", version: "1.0.0" },
    { capabilities: { elicitation: { form: {} } }, versionNegotiation: { mode } },
  );
  client.setRequestHandler("elicitation/create", async (request) => {
    asked.push(request.params.message);
    return action === "accept" ? { action, content: { confirm: true } } : { action };
  });
  await client.connect(recorded(transports[name](), wire));
  return client;
}

// The tools/call requests sent since wire[since], each with the result it got.
function calls(wire, since) {
  const sent = wire.slice(since).filter((m) => m.out?.method === "tools/call").map((m) => m.out);
  return sent.map((request) => ({ request, result: wire.find((m) => m.in?.id === request.id && "result" in m.in)?.in.result }));
}

// A confirmation's two legs on the wire: an input_required result asking by elicitation,
// then the SDK's retry (a new request id) with the answer and the requestState echoed.
function askedByInputRequired(name, when, wire, since) {
  const legs = calls(wire, since);
  const [first, retry] = legs;
  const questions = Object.values(first?.result?.inputRequests ?? {});
  check(
    legs.length === 2 && first.result.resultType === "input_required" && questions.length === 1 && questions[0].method === "elicitation/create" && first.result.requestState?.startsWith("cma_"),
    `${name}: ${when}, the first tools/call answers input_required with an elicitation/create and a requestState (${JSON.stringify(first?.result).slice(0, 300)})`,
  );
  const [key] = Object.keys(first.result.inputRequests);
  check(
    retry.request.id !== first.request.id && retry.request.params.requestState === first.result.requestState && retry.request.params.inputResponses?.[key]?.action === "accept" && retry.result.resultType !== "input_required",
    `${name}: ${when}, the SDK retries with inputResponses.${key} and the requestState echoed, and gets the result (${JSON.stringify(retry?.request.params).slice(0, 300)})`,
  );
}

function run(client, code, extra = {}) {
  return client.callTool({ name: "execute_code", arguments: { code, ...extra } });
}

// The first line of the text a model reads.
const text = (result) => (result.content?.[0]?.text ?? "").split("\n")[0].slice(0, 300);

const ADD = "return (await tools.toy.add({ a: 1, b: 2 })).sum;";
// The tool's name is computed: the confirmation can only be asked mid-run.
const ADD_MID_RUN = "const name = 'add';\nreturn (await tools.toy[name]({ a: 1, b: 2 })).sum;";

async function session(name, mode) {
  const asked = [];
  const wire = [];
  const client = await connect(name, mode, "accept", asked, wire);
  check(client.getProtocolEra() === "modern" && client.getNegotiatedProtocolVersion() === MODERN, `${name}: ${JSON.stringify(mode)} negotiates ${MODERN} (${client.getNegotiatedProtocolVersion()})`);
  check(client.getServerVersion()?.name === "codemode-mcp", `${name}: server/discover names the server (${JSON.stringify(client.getServerVersion())})`);

  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  check(names.includes("execute_code"), `${name}: tools/list (${names})`);
  const two = await run(client, "return 1 + 1");
  check(!two.isError && two.structuredContent.result === 2, `${name}: execute_code runs a program (${text(two)})`);

  const stored = await run(client, "await tools.state.set({ key: 'k', value: 'v' });\nreturn 'stored';");
  check(!stored.isError, `${name}: a program stores state (${text(stored)})`);
  const handle = stored.structuredContent.state;
  if (name === "stdio") {
    // Over stdio the process has one client, whose store is implicit: the server names
    // no handle, and a later run without one reads the same store.
    check(handle === undefined, `${name}: the process's store needs no handle (${JSON.stringify(stored.structuredContent)})`);
    const read = await run(client, "return await tools.state.get({ key: 'k' });");
    check(!read.isError && read.structuredContent.result === "v", `${name}: a later run reads it (${text(read)})`);
  } else {
    // Over HTTP a modern request names no session: each run without a handle gets a
    // fresh store, which only the returned handle opens again.
    check(typeof handle === "string" && handle.startsWith("cms_"), `${name}: the result names the store's handle (${handle})`);
    const fresh = await run(client, "return await tools.state.get({ key: 'k' });");
    check(!fresh.isError && fresh.structuredContent.result === null, `${name}: a run without the handle reads nothing (${text(fresh)})`);
  }
  if (handle !== undefined) {
    const read = await run(client, "return await tools.state.get({ key: 'k' });", { state: handle });
    check(!read.isError && read.structuredContent.result === "v", `${name}: a later run passing the handle reads 'v' (${text(read)})`);
  }

  let since = wire.length;
  const upFront = await run(client, ADD);
  check(!upFront.isError && upFront.structuredContent.result === 3, `${name}: a confirmed call runs once the user accepts, asked up front (${text(upFront)})`);
  check(asked.length === 1 && asked[0].includes("tools.toy.add"), `${name}: the user was asked once, about the tool (${JSON.stringify(asked)})`);
  askedByInputRequired(name, "up front", wire, since);
  since = wire.length;
  const midRun = await run(client, ADD_MID_RUN);
  check(!midRun.isError && midRun.structuredContent.result === 3, `${name}: a call reached mid-run parks the run; the SDK's retry with the answer resumes it (${text(midRun)})`);
  check(asked.length === 2 && asked[1].includes("tools.toy.add") && asked[1].includes("line 2"), `${name}: the user was asked about the call and its line (${JSON.stringify(asked.slice(1))})`);
  askedByInputRequired(name, "mid-run", wire, since);

  // (Over stdio the SDK sent its server/discover probe to a sibling process, unrecorded.)
  const requests = wire.filter((m) => m.out?.method !== undefined && m.out.id !== undefined).map((m) => m.out);
  const methods = [...new Set(requests.map((r) => r.method))];
  check(!methods.includes("initialize") && requests.every((r) => r.params?._meta?.["io.modelcontextprotocol/protocolVersion"] === MODERN), `${name}: no handshake; every request carries _meta protocolVersion ${MODERN} (${methods})`);
  const inbound = wire.filter((m) => m.in?.method !== undefined && m.in.id !== undefined);
  check(inbound.length === 0, `${name}: the server sent no request to the client (${JSON.stringify(inbound).slice(0, 300)})`);
  await client.close();

  // A pinned client whose user declines: nothing runs, the error's kind is policy.
  const declining = await connect(name, { pin: MODERN }, "decline");
  check(declining.getNegotiatedProtocolVersion() === MODERN, `${name}: { pin: '${MODERN}' } negotiates it`);
  for (const [when, code] of [["up front", ADD], ["mid-run", ADD_MID_RUN]]) {
    const declined = await run(declining, code);
    const error = declined.structuredContent?.error;
    check(declined.isError && error?.kind === "policy" && text(declined).includes("declined"), `${name}: a call declined ${when} fails with kind policy (${text(declined)})`);
  }
  await declining.close();
}

async function main() {
  await session("stdio", "auto");
  await session("streamable HTTP", "auto");
  console.log("ok: done");
}

main().catch((err) => {
  console.log(`FAIL: ${err.stack || err}`);
  process.exit(1);
});
