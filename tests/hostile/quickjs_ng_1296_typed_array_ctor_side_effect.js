// expect: ok|runtime|crashed
// quickjs-ng#1296: js_typed_array_constructor read a length that a side effect (a getter
// run while the prototype is looked up) had shrunk. Must end as a value or an error in its
// own worker, never as a crash of the server.
const rab = new ArrayBuffer(16, { maxByteLength: 16 });
const src = new Uint8Array(rab);
const newTarget = new Proxy(function () {}, {
  get(target, key, receiver) {
    if (key === "prototype") { rab.resize(0); return Uint8Array.prototype; }
    return Reflect.get(target, key, receiver);
  },
});
const copy = Reflect.construct(Uint8Array, [src.length], newTarget);
return copy.length;
