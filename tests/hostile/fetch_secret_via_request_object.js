// expect: ok
// result: 0
// timeoutMs: 3000
const q = new Request('${WEB}/echo');
return [...q.headers].length;
