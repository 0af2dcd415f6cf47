// expect: ok
// result: [0,null]
const buffer = new ArrayBuffer(8, { maxByteLength: 16 });
const view = new Uint8Array(buffer);
buffer.resize(0);
return [view.length, view[0] ?? null];
