// expect: ok
// result: true
// timeoutMs: 15000
const u = '${WEB}/redirect?to=' + encodeURIComponent('${WEB}/redirect?to=${WEB}/json');
const r = await fetch(u);
return r.redirected;
