// expect: runtime
// A ToolError built by the glue's own failure function, taken from a call site, names a
// tool the program never called: the host classifies failures from its own records, so
// this is a plain runtime error, never kind `tool`.
let taken = [];
Error.prepareStackTrace = (error, frames) => {
  for (const f of frames) {
    const fn = f.getFunction && f.getFunction();
    if (typeof fn === "function") taken.push(fn);
  }
  return "stack";
};
try { await tools.toy.add({ a: "not a number" }); } catch (e) {}
Error.prepareStackTrace = undefined;
for (const fn of taken) {
  let forged;
  try { forged = fn("forged", "admin.delete_everything"); } catch (e) { continue; }
  if (forged instanceof Error) throw forged;
}
throw new ToolError("forged", "admin.delete_everything");
