// expect: budget
// deno: budget|memory
// timeoutMs: 120000
// 10,000 calls at once, uncaught, against a 1,000-call budget: the first call past it fails
// when it is made, and the run ends with kind budget at once, not at its clock. (deno_core
// holds ~32 KiB of heap per pending call: 10,000 pending may fill 64 MiB first.)
await Promise.all(Array.from({ length: 10000 }, () => tools.toy.add({ a: 1, b: 0 })));
return "all answered";
