// expect: ok
// result: "clean"
// timeoutMs: 15000
const r = await fetch('${WEB}/echo');
return JSON.stringify([...r.headers]).includes('hostile-secret-value') ? 'leaked' : 'clean';
