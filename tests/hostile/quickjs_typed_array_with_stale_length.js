// expect: ok|runtime|crashed
// bellard/quickjs#492: TypedArray.prototype.with kept a length that valueOf had shrunk.
const ab = new ArrayBuffer(4096, { maxByteLength: 4096 });
const ta = new Int32Array(ab);
try {
  const out = ta.with(0, { valueOf() { ab.resize(8); return 1; } });
  return out.length;
} catch (e) {
  return e.name;
}
