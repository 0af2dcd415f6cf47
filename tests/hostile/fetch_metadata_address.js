// expect: ok
// result: true
// timeoutMs: 15000
const u = ['http://169.254.169.254/latest/meta-data/'][0];
return await fetch(u).then(() => 'reached', (e) => e.message.includes('not in the egress allow-list'));
