// expect: ok|runtime|crashed
// quickjs-ng#1301: Atomics.store converted its value (running valueOf, which shrank the
// resizable buffer) after taking a pointer into the buffer.
const rab = new ArrayBuffer(1024, { maxByteLength: 1024 * 1024 });
const i32 = new Int32Array(rab);
Atomics.store(i32, 0, { valueOf() { rab.resize(0); return 123; } });
return i32.length;
