// expect: runtime|timeout
// timeoutMs: 1000
const sab = new SharedArrayBuffer(16);
return Atomics.wait(new Int32Array(sab), 0, 0, 5000);
