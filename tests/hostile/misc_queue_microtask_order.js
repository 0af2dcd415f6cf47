// expect: ok
// result: [1,2]
// timeoutMs: 1000
const order = [];
queueMicrotask(() => order.push(2));
order.push(1);
await null;
return order;
