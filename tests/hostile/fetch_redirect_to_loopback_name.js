// expect: ok
// result: true
// timeoutMs: 3000
const u = '${WEB}/redirect?to=' + encodeURIComponent('${NAMED}/json');
return await fetch(u).then(() => 'reached', (e) => e.message.includes('loopback'));
