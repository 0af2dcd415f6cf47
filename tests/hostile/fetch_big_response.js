// expect: ok
// result: true
// timeoutMs: 15000
return await fetch('${WEB}/big').then(() => 'reached', (e) => e.message.includes('larger than'));
