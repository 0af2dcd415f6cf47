// expect: ok
// result: true
// timeoutMs: 15000
const u = '${WEB}/redirect?to=' + encodeURIComponent('http://169.254.169.254/');
return await fetch(u).then(() => 'reached', (e) => e.message.includes('may not reach'));
