// expect: ok|runtime|crashed
// Same family: set() from an array-like whose element getter shrinks the target.
const rab = new ArrayBuffer(64, { maxByteLength: 64 });
const u8 = new Uint8Array(rab);
const source = { length: 64, get 0() { rab.resize(0); return 1; } };
try { u8.set(source); } catch (e) { return e.name; }
return u8.length;
