// expect: ok|memory|runtime
let f = function () {};
for (let i = 0; i < 100000; i++) f = f.bind(null);
return f();
