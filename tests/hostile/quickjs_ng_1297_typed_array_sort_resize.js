// expect: ok|runtime|crashed
// quickjs-ng#1297: TypedArray.prototype.sort with a comparator that shrinks the resizable
// buffer mid-sort read past the buffer's end.
const size = 256;
const ab = new ArrayBuffer(size, { maxByteLength: size * 10 });
const u8 = new Uint8Array(ab);
for (let i = 0; i < size; i++) u8[i] = i;
u8[size - 1] = 0;
let count = 0;
u8.sort((a, b) => {
  if (++count === 1734) ab.resize(10);
  return a - b;
});
return u8.length;
