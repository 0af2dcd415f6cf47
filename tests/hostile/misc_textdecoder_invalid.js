// expect: ok
// result: "\ufffd\ufffd"
// timeoutMs: 1000
return new TextDecoder().decode(new Uint8Array([0xff, 0xfe]));
