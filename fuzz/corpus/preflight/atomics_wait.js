// expect: runtime
const cell = new Int32Array(new SharedArrayBuffer(4));
return Atomics.wait(cell, 0, 0, 60000);
