// expect: ok
// result: false
// V8's stack API, where the engine has it, sees only what the program could see.
Error.prepareStackTrace = (e, frames) => frames.map((f) => typeof (f.getThis && f.getThis())).join(',');
return String(new Error('x').stack).includes('process');
