// expect: ok
// result: 1
tools.toy = { add: () => 42 };
globalThis.tools = null;
return 1;
