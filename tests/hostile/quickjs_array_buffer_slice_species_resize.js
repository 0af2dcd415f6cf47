// expect: ok|runtime|crashed
// Same family: ArrayBuffer.prototype.slice with a species constructor that shrinks it.
const rab = new ArrayBuffer(64, { maxByteLength: 64 });
class Evil extends ArrayBuffer {
  static get [Symbol.species]() { rab.resize(0); return ArrayBuffer; }
}
Object.setPrototypeOf(rab, Evil.prototype);
rab.constructor = Evil;
try { return rab.slice(0, 64).byteLength; } catch (e) { return e.name; }
