// expect: timeout
const registry = new FinalizationRegistry(() => { for (;;) {} });
for (let i = 0; i < 1000; i++) registry.register({ i }, i);
return "registered";
