// expect: ok
// result: "withheld"
// timeoutMs: 15000
// An endpoint that echoes the rule's credential gzip-compressed (which a program could
// inflate itself): the body is withheld whole.
const t = await (await fetch('${WEB}/echo-encoded?as=gzip')).text();
return t.includes('[withheld') ? 'withheld' : 'not withheld';
