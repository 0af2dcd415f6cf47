// expect: ok
// result: true
// timeoutMs: 3000
const u = '${WEB}/redirect?to=' + encodeURIComponent('${WEB}/redirect?to=${WEB}/json');
const r = await fetch(u);
return r.redirected;
