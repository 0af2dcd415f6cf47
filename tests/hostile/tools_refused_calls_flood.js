// expect: ok
// result: 19000
// 20,000 calls against a 1,000-call budget, refusals caught: the calls list keeps the
// budget's worth and counts the rest, so the answer stays small.
const settled = await Promise.allSettled(Array.from({ length: 20000 }, () => tools.toy.add({ a: 1, b: 2 })));
return settled.filter((s) => s.status === "rejected").length;
