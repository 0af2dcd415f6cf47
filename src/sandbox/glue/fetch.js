// fetch: WHATWG-shaped `fetch`, `Headers`, `Request` and `Response`, answered by the host
// (host.fetch), which alone decides what is reached (codemode.egress) and adds the secret
// headers a rule names after the request has left the isolate. Installed only when the
// egress rules allow some URL. Installs: fetch, Headers, Request, Response.
(function (host) {
  "use strict";
  if (typeof host.fetch !== "function") return;
  const hostFetch = host.fetch;
  const { stringify: jsonStringify, parse: jsonParse } = JSON;
  const hasOwn = Object.hasOwn;
  const apply = Reflect.apply, regexExec = RegExp.prototype.exec, toText = String, toNumber = Number;
  const SITE = /program\.ts:(\d+):(\d+)/;

  // The program's line:column that called fetch, for the user asked to confirm it.
  function siteOf(error) {
    try {
      const match = apply(regexExec, SITE, [toText(error.stack)]);
      if (match) {
        const line = toNumber(match[1]) - WRAPPER_LINES, column = toNumber(match[2]);
        if (line >= 1 && column >= 1) return { line, column };
      }
    } catch (ignored) {
      // A stack the program tampered with has no site.
    }
    return null;
  }
  const WRAPPER_LINES = host.wrapperLines;
  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

  function headerName(name) {
    const lower = String(name).toLowerCase();
    if (!TOKEN.test(lower)) throw new TypeError("Headers: " + jsonStringify(String(name)) + " is not a valid header name");
    return lower;
  }

  function headerValue(value) {
    const text = String(value).trim();
    if (/[\r\n\0]/.test(text)) throw new TypeError("Headers: a header value may not contain CR, LF or NUL");
    return text;
  }

  const lists = new WeakMap();

  class Headers {
    constructor(init) {
      lists.set(this, new Map());
      if (init === undefined || init === null) return;
      if (init instanceof Headers) {
        for (const [name, value] of init) this.append(name, value);
      } else if (typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          if (!pair || pair.length !== 2) throw new TypeError("Headers: each entry must be a [name, value] pair");
          this.append(pair[0], pair[1]);
        }
      } else if (typeof init === "object") {
        for (const name of Object.keys(init)) this.append(name, init[name]);
      } else {
        throw new TypeError("Headers: expected an object, an array of [name, value] pairs, or Headers");
      }
    }
    append(name, value) {
      const map = lists.get(this), key = headerName(name), text = headerValue(value);
      map.set(key, map.has(key) ? map.get(key) + ", " + text : text);
    }
    set(name, value) { lists.get(this).set(headerName(name), headerValue(value)); }
    get(name) { const value = lists.get(this).get(headerName(name)); return value === undefined ? null : value; }
    has(name) { return lists.get(this).has(headerName(name)); }
    delete(name) { lists.get(this).delete(headerName(name)); }
    forEach(callback, thisArg) { for (const [name, value] of this) callback.call(thisArg, value, name, this); }
    *entries() { yield* [...lists.get(this).entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)); }
    *keys() { for (const [name] of this.entries()) yield name; }
    *values() { for (const [, value] of this.entries()) yield value; }
    [Symbol.iterator]() { return this.entries(); }
    get [Symbol.toStringTag]() { return "Headers"; }
  }

  // Bodies: { text } or { base64 }, read once.
  const bodies = new WeakMap();

  function bytesToBase64(bytes) {
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(binary);
  }

  function base64ToBytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function toBody(body) {
    if (body === undefined || body === null) return null;
    if (typeof body === "string") return { text: body };
    if (body instanceof ArrayBuffer) return { base64: bytesToBase64(new Uint8Array(body)) };
    if (ArrayBuffer.isView(body)) return { base64: bytesToBase64(new Uint8Array(body.buffer, body.byteOffset, body.byteLength)) };
    throw new TypeError("fetch: a body must be a string, an ArrayBuffer or a typed array; for JSON pass JSON.stringify(value)");
  }

  function take(object, what) {
    const state = bodies.get(object);
    if (state.used) return Promise.reject(new TypeError(what + ": the body has already been read"));
    state.used = true;
    return Promise.resolve(state.body);
  }

  const bodyMethods = {
    get bodyUsed() { return bodies.get(this).used; },
    text() {
      return take(this, "text()").then((body) => {
        if (body === null) return "";
        return body.text !== undefined ? body.text : new TextDecoder().decode(base64ToBytes(body.base64));
      });
    },
    json() {
      return this.text().then((text) => jsonParse(text));
    },
    bytes() {
      return take(this, "bytes()").then((body) => {
        if (body === null) return new Uint8Array(0);
        return body.text !== undefined ? new TextEncoder().encode(body.text) : base64ToBytes(body.base64);
      });
    },
    arrayBuffer() {
      return this.bytes().then((bytes) => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    },
  };

  function withBody(Class) {
    for (const key of Object.keys(Object.getOwnPropertyDescriptors(bodyMethods))) {
      Object.defineProperty(Class.prototype, key, Object.getOwnPropertyDescriptor(bodyMethods, key));
    }
  }

  class Request {
    constructor(input, init) {
      init = init || {};
      const from = input instanceof Request ? input : null;
      this.url = from ? from.url : String(input && input.href !== undefined ? input.href : input);
      this.method = String(init.method || (from ? from.method : "GET")).toUpperCase();
      this.headers = new Headers(init.headers !== undefined ? init.headers : from ? from.headers : undefined);
      const body = init.body !== undefined ? toBody(init.body) : from ? bodies.get(from).body : null;
      if (body !== null && (this.method === "GET" || this.method === "HEAD")) {
        throw new TypeError("fetch: a " + this.method + " request cannot have a body");
      }
      bodies.set(this, { body, used: false });
      this.redirect = "follow";
    }
    clone() { return new Request(this); }
    get [Symbol.toStringTag]() { return "Request"; }
  }
  withBody(Request);

  class Response {
    constructor(body, init) {
      init = init || {};
      this.status = init.status === undefined ? 200 : Number(init.status);
      if (!(this.status >= 200 && this.status <= 599)) throw new RangeError("Response: status must be 200 to 599");
      this.statusText = init.statusText === undefined ? "" : String(init.statusText);
      this.headers = new Headers(init.headers);
      this.url = "";
      this.redirected = false;
      this.type = "default";
      bodies.set(this, { body: toBody(body), used: false });
    }
    get ok() { return this.status >= 200 && this.status < 300; }
    clone() {
      const state = bodies.get(this);
      if (state.used) throw new TypeError("clone(): the body has already been read");
      const copy = new Response(null, { status: this.status, statusText: this.statusText, headers: this.headers });
      copy.url = this.url;
      copy.redirected = this.redirected;
      copy.type = this.type;
      bodies.get(copy).body = state.body;
      return copy;
    }
    static json(data, init) {
      const headers = new Headers(init && init.headers);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
      return new Response(jsonStringify(data), Object.assign({}, init, { headers }));
    }
    get [Symbol.toStringTag]() { return "Response"; }
  }
  withBody(Response);

  // A TypeError whose stack is the program's frames at the fetch (lines as the engine
  // numbers them, like every stack in the isolate).
  function positioned(message, site) {
    const error = new TypeError(message);
    try {
      const frames = toText(site.stack).split("\n").filter((line) => line.includes("program.ts:"));
      error.stack = "TypeError: " + message + "\n" + frames.join("\n") + (frames.length ? "\n" : "");
    } catch (ignored) {
      // Keep the engine's own stack.
    }
    return error;
  }

  async function fetch(input, init) {
    const site = new Error();
    const request = new Request(input, init);
    const body = bodies.get(request).body;
    const wire = {
      url: request.url,
      method: request.method,
      headers: [...request.headers],
      body: body === null ? null : body.text !== undefined ? body.text : body.base64,
      bodyBase64: body !== null && body.text === undefined,
      site: siteOf(site),
    };
    const answer = jsonParse(await hostFetch(jsonStringify(wire)));
    if (hasOwn(answer, "error")) throw positioned(answer.error.message, site);
    const reply = answer.ok;
    const response = new Response(null, { status: reply.status < 200 ? 200 : reply.status, statusText: reply.statusText, headers: reply.headers });
    response.status = reply.status;
    response.url = reply.url;
    response.redirected = reply.redirected;
    response.type = "basic";
    bodies.get(response).body = reply.bodyBase64 ? { base64: reply.body } : { text: reply.body };
    return response;
  }

  for (const [name, value] of [["fetch", fetch], ["Headers", Headers], ["Request", Request], ["Response", Response]]) {
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
  }
})
