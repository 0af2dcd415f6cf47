// expect: ok
// result: "DataCloneError"
// timeoutMs: 1000
try { structuredClone(() => 1); } catch (e) { return e.name; }
