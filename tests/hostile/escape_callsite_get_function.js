// expect: ok
// result: {"functions":0,"receivers":0,"sites":true}
// Call sites given to Error.prepareStackTrace hold no function and no receiver: the
// frames of a tool call are the glue's, and a program holding them could call the glue
// past its checks.
let functions = 0, receivers = 0, sites = false;
Error.prepareStackTrace = (error, frames) => {
  for (const f of frames) {
    if (typeof f.getFileName() === "string") sites = true;
    if (f.getFunction && f.getFunction() !== undefined) functions++;
    if (f.getThis && f.getThis() !== undefined) receivers++;
  }
  return "stack";
};
try { await tools.toy.add({ a: "not a number" }); } catch (e) {}
try { await tools.toy.nope({}); } catch (e) {}
await tools.toy.add({ a: 1, b: 2 });
new Error("x");
Error.prepareStackTrace = undefined;
return { functions, receivers, sites };
