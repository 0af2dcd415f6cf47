// expect: ok
// result: "object"
const o = {};
if (Error.captureStackTrace) Error.captureStackTrace(o);
return typeof o;
