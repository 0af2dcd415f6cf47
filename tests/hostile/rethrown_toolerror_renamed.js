// expect: tool
// tool: toy.add
// A real ToolError, caught and given another tool's name (and a toString that runs when
// read) before it is thrown on: the host names the tool from its own record of the call.
try {
  await tools.toy.add({ a: "not a number" });
} catch (e) {
  e.tool = "admin.delete_everything";
  e.schemaPath = { toString() { throw new Error("read by the host"); } };
  throw e;
}
return "not reached";
