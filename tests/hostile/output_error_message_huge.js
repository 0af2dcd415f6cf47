// expect: runtime
// A 40 MB error message: the answer keeps its head and says how much was cut, so it stays
// a few KiB instead of 80 MB that take minutes to reach the client. On deno the stack of
// such an error is not formatted (deno_core's formatter panicked without the heap for it,
// which aborted the worker, or the whole server with `--isolation none`).
throw new Error("x".repeat(40000000));
