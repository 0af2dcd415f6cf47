// expect: ok
// result: "TypeError"
// timeoutMs: 15000
const u = '${WEB}/redirect?to=' + encodeURIComponent('file:///etc/passwd');
return await fetch(u).then(() => 'reached', (e) => e.name);
