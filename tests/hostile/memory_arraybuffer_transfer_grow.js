// expect: memory|runtime
let b = new ArrayBuffer(1, { maxByteLength: 2 ** 31 });
b.resize(2 ** 31 - 1);
return b.byteLength;
