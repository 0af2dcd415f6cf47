// expect: ok
// result: 0
// timeoutMs: 15000
const q = new Request('${WEB}/echo');
return [...q.headers].length;
