// expect: ok
// result: "withheld"
// timeoutMs: 15000
const r = await fetch('${WEB}/echo');
const t = await r.text();
return t.includes('hostile-secret-value') ? 'leaked' : t.includes('[withheld]') ? 'withheld' : 'absent';
