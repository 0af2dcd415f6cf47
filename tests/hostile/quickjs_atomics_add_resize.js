// expect: ok|runtime|crashed
// bellard/quickjs#508: Atomics.add with a valueOf that shrinks the resizable buffer.
const rab = new ArrayBuffer(64, { maxByteLength: 1 << 20 });
const i32 = new Int32Array(rab);
try { Atomics.add(i32, 0, { valueOf() { rab.resize(1 << 20); return 1; } }); } catch (e) { return e.name; }
return i32.length;
