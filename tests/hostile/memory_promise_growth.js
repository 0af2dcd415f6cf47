// expect: memory
const ps = [];
for (;;) ps.push(new Promise(() => {}));
