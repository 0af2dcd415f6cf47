// expect: ok|runtime|crashed
// Same family: fill's value conversion shrinks the buffer it fills.
const rab = new ArrayBuffer(64, { maxByteLength: 64 });
const u8 = new Uint8Array(rab);
u8.fill({ valueOf() { rab.resize(0); return 1; } });
return u8.length;
