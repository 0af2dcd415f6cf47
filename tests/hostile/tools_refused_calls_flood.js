// expect: ok
// result: 500
// 1,500 calls at once against a 1,000-call budget, refusals caught: the calls list keeps
// the budget's worth and counts the rest, so the answer stays small. (Not more at once:
// deno_core holds ~32 KiB of heap per pending call, so 2,000 fill its 64 MiB.)
const settled = await Promise.allSettled(Array.from({ length: 1500 }, () => tools.toy.add({ a: 1, b: 2 })));
return settled.filter((s) => s.status === "rejected").length;
