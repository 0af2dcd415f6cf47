// expect: ok
// result: "withheld"
// timeoutMs: 15000
// An endpoint that echoes the rule's credential in hex: the encoded copy is withheld too.
const t = await (await fetch('${WEB}/echo-encoded?as=hex')).text();
let decoded = '';
for (let i = 0; i + 1 < t.length; i += 2) decoded += String.fromCharCode(parseInt(t.slice(i, i + 2), 16));
return decoded.includes('hostile-secret-value') ? 'leaked' : t.includes('[withheld]') ? 'withheld' : 'absent: ' + t;
