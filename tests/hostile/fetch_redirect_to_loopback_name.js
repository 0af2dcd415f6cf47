// expect: ok
// result: true
// timeoutMs: 15000
const u = '${WEB}/redirect?to=' + encodeURIComponent('${NAMED}/json');
return await fetch(u).then(() => 'reached', (e) => e.message.includes('loopback'));
