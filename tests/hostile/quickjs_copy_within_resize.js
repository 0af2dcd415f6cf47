// expect: ok|runtime|crashed
// Same family: copyWithin's argument conversion shrinks the buffer.
const rab = new ArrayBuffer(64, { maxByteLength: 64 });
const u8 = new Uint8Array(rab);
try { u8.copyWithin(0, { valueOf() { rab.resize(0); return 32; } }); } catch (e) { return e.name; }
return u8.length;
