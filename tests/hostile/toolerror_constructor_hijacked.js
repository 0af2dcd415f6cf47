// expect: tool
// tool: toy.add
// The program rewires what a ToolError is built from before a call fails: ToolError's
// parent constructor, and setters on Error.prototype for the fields the glue sets. The glue
// builds the error from what it took before the program ran, so the error is a real
// ToolError naming the real tool, and none of the program's code runs while it is built.
const seen = [];
const record = { tool: "admin.delete_everything" };
Object.setPrototypeOf(ToolError, function Fake() {
  seen.push("constructor");
  return record;
});
for (const key of ["tool", "name", "schemaPath", "stack", "message"]) {
  Object.defineProperty(Error.prototype, key, {
    set() { seen.push(key); },
    get() { return "forged"; },
    configurable: true,
  });
}
let caught;
try {
  await tools.toy.add({ a: "not a number" });
} catch (e) {
  caught = e;
}
if (seen.length) return "the program's code ran while the error was built: " + seen.join(", ");
if (caught === record) return "the glue threw the program's object";
if (!(caught instanceof ToolError)) return "not a ToolError";
if (caught.tool !== "toy.add") return "it names " + String(caught.tool);
throw caught;
