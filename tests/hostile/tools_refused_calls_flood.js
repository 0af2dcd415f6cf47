// expect: ok
// result: 4000
// 5,000 calls against a 1,000-call budget, refusals caught: the calls list keeps the
// budgets' worth and counts the rest, so the answer stays small.
const settled = await Promise.allSettled(Array.from({ length: 5000 }, () => tools.toy.add({ a: 1, b: 2 })));
return settled.filter((s) => s.status === "rejected").length;
