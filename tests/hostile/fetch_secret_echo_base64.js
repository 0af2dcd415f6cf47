// expect: ok
// result: "withheld"
// timeoutMs: 15000
// An endpoint that echoes the rule's credential in base64: the encoded copy is withheld too.
const t = await (await fetch('${WEB}/echo-encoded?as=base64')).text();
let decoded = '';
try { decoded = atob(t); } catch (e) {}
return decoded.includes('hostile-secret-value') ? 'leaked' : t.includes('[withheld]') ? 'withheld' : 'absent: ' + t;
