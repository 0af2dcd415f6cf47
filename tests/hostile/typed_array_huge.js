// expect: runtime
// deno: memory
return new Uint8Array(1e10).length;
