// expect: ok
// timeoutMs: 1000
delete globalThis.tools;
delete globalThis.console;
return typeof tools;
