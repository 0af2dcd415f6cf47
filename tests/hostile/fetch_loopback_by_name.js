// expect: ok
// result: true
// timeoutMs: 15000
return await fetch(['${NAMED}/json'][0]).then(() => 'reached', (e) => e.message.includes('loopback'));
