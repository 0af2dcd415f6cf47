// expect: ok
// result: "TypeError"
// timeoutMs: 3000
const u = '${WEB}/redirect?to=' + encodeURIComponent('file:///etc/passwd');
return await fetch(u).then(() => 'reached', (e) => e.name);
