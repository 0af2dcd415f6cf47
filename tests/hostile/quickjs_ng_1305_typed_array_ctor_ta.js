// expect: ok|runtime|crashed
// quickjs-ng#1305: new Uint8Array(typedArray) with a newTarget whose prototype lookup
// resizes the source buffer to 0 copied from freed memory.
const rab = new ArrayBuffer(10, { maxByteLength: 10 });
const src = new Uint8Array(rab, 0);
const evil = new Proxy(function () {}, {
  get(target, key, receiver) {
    if (key === "prototype") { rab.resize(0); return Uint8Array.prototype; }
    return Reflect.get(target, key, receiver);
  },
});
const copy = Reflect.construct(Uint8Array, [src], evil);
return copy.length;
