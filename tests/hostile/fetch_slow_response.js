// expect: ok
// result: true
// timeoutMs: 15000
return await fetch('${WEB}/slow').then(() => 'reached', (e) => e.message.includes('longer than'));
