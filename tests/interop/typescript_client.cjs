// Interop: the official TypeScript MCP SDK client drives codemode-mcp over stdio,
// streamable HTTP and legacy SSE.
//
// Usage: NODE_PATH=DIR/node_modules node typescript_client.cjs PATH_TO_CODEMODE_MCP
// Prints one line per check and exits non-zero on the first failure.

const { spawn } = require("node:child_process");
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { SSEClientTransport } = require("@modelcontextprotocol/sdk/client/sse.js");

const binary = process.argv[2];

function check(condition, what) {
  if (!condition) {
    console.log(`FAIL: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

async function session(name, transport) {
  const client = new Client({ name: "typescript-interop", version: "1.0.0" });
  await client.connect(transport);
  check(client.getServerVersion().name === "codemode-mcp", `${name}: initialize`);
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  check(names.join() === "execute_code,search_tools", `${name}: tools/list (${names})`);
  const ran = await client.callTool({
    name: "execute_code",
    arguments: { code: "const xs: number[] = [4, 5];\nconsole.log('from ts');\nreturn { product: xs[0] * xs[1] };" },
  });
  check(!ran.isError && ran.structuredContent.result.product === 20, `${name}: a program's result`);
  check(ran.structuredContent.logs[0].message === "from ts", `${name}: its logs`);
  const failed = await client.callTool({ name: "execute_code", arguments: { code: "return [1].map(x => x.y.z)" } });
  const error = failed.structuredContent.error;
  check(failed.isError && error.kind === "runtime" && error.line === 1, `${name}: a positioned error (${JSON.stringify(error)})`);
  const prompts = await client.listPrompts();
  check(prompts.prompts[0].name === "write-a-program", `${name}: prompts/list`);
  await client.close();
}

function serveHttp() {
  return new Promise((resolve, reject) => {
    const server = spawn(binary, ["serve", "--http", "127.0.0.1:0"], {
      env: { ...process.env, CODEMODE_LOG: "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    server.stderr.on("data", (chunk) => {
      log += chunk;
      const found = /listening on (http:\/\/[0-9.]+:[0-9]+)/.exec(log);
      if (found) resolve({ server, base: found[1] });
    });
    server.on("exit", (code) => reject(new Error(`server exited (${code}) before listening:\n${log}`)));
  });
}

async function main() {
  await session("stdio", new StdioClientTransport({ command: binary, args: ["serve"], env: { CODEMODE_LOG: "warn" } }));
  const { server, base } = await serveHttp();
  try {
    await session("streamable HTTP", new StreamableHTTPClientTransport(new URL(`${base}/mcp`)));
    await session("legacy SSE", new SSEClientTransport(new URL(`${base}/sse`)));
  } finally {
    server.removeAllListeners("exit");
    const exited = new Promise((resolve) => server.on("exit", (code) => resolve(code)));
    server.kill("SIGTERM");
    check((await exited) === 0, "SIGTERM ends serve --http with exit code 0");
  }
}

main().catch((err) => {
  console.log(`FAIL: ${err.stack || err}`);
  process.exit(1);
});
