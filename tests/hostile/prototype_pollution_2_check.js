// expect: ok
// result: ["clean",[2],"{\"a\":1}"]
return [({}).polluted ?? "clean", [1].map((x) => x + 1), JSON.stringify({ a: 1 })];
