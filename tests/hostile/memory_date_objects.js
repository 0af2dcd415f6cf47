// expect: memory
const a = [];
for (;;) a.push(new Date());
