// expect: runtime
// deno: runtime|crashed
// A 40 MB error message: the answer keeps its head and says how much was cut, so it stays
// a few KiB instead of 80 MB that take minutes to reach the client.
throw new Error("x".repeat(40000000));
