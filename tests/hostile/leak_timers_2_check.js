// expect: ok
// result: "clean"
// Must not see what the previous execution set.
await new Promise((r) => setTimeout(r, 1));
return 'clean';
