// web: the small standard globals programs expect, where the engine lacks them.
// Installs (only if missing): structuredClone, TextEncoder, TextDecoder.
(function (host) {
  "use strict";

  function cloneError(what) {
    const error = new TypeError("structuredClone: " + what + " could not be cloned");
    error.name = "DataCloneError";
    return error;
  }

  function clone(value, seen) {
    if (typeof value === "function") throw cloneError("a function");
    if (typeof value === "symbol") throw cloneError("a symbol");
    if (value === null || typeof value !== "object") return value;
    if (seen.has(value)) return seen.get(value);
    let copy;
    if (Array.isArray(value)) {
      copy = [];
      seen.set(value, copy);
      for (let i = 0; i < value.length; i++) copy[i] = clone(value[i], seen);
      return copy;
    }
    if (value instanceof Date) copy = new Date(value.getTime());
    else if (value instanceof RegExp) copy = new RegExp(value.source, value.flags);
    else if (value instanceof ArrayBuffer) copy = value.slice(0);
    else if (ArrayBuffer.isView(value)) copy = new value.constructor(value);
    else if (value instanceof Map) {
      copy = new Map();
      seen.set(value, copy);
      for (const [k, v] of value) copy.set(clone(k, seen), clone(v, seen));
      return copy;
    } else if (value instanceof Set) {
      copy = new Set();
      seen.set(value, copy);
      for (const v of value) copy.add(clone(v, seen));
      return copy;
    } else if (value instanceof Error) {
      copy = new Error(value.message);
      copy.name = value.name;
    } else if (value instanceof Promise || value instanceof WeakMap || value instanceof WeakSet) {
      throw cloneError("a " + value.constructor.name);
    } else {
      copy = {};
      seen.set(value, copy);
      for (const key of Object.keys(value)) copy[key] = clone(value[key], seen);
      return copy;
    }
    seen.set(value, copy);
    return copy;
  }

  if (typeof globalThis.structuredClone !== "function") {
    globalThis.structuredClone = function structuredClone(value) {
      return clone(value, new Map());
    };
  }

  if (typeof globalThis.TextEncoder !== "function") {
    globalThis.TextEncoder = class TextEncoder {
      get encoding() { return "utf-8"; }
      encode(input = "") {
        const text = String(input);
        const bytes = [];
        for (let i = 0; i < text.length; i++) {
          let code = text.codePointAt(i);
          if (code > 0xffff) i++;
          else if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;
          if (code < 0x80) bytes.push(code);
          else if (code < 0x800) bytes.push(0xc0 | (code >> 6), 0x80 | (code & 63));
          else if (code < 0x10000) bytes.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 63), 0x80 | (code & 63));
          else bytes.push(0xf0 | (code >> 18), 0x80 | ((code >> 12) & 63), 0x80 | ((code >> 6) & 63), 0x80 | (code & 63));
        }
        return new Uint8Array(bytes);
      }
    };
  }

  if (typeof globalThis.TextDecoder !== "function") {
    globalThis.TextDecoder = class TextDecoder {
      constructor(label = "utf-8") {
        const name = String(label).toLowerCase();
        if (name !== "utf-8" && name !== "utf8") {
          throw new RangeError("TextDecoder: only utf-8 is supported, not " + JSON.stringify(label));
        }
      }
      get encoding() { return "utf-8"; }
      decode(input) {
        if (input === undefined) return "";
        const bytes = input instanceof ArrayBuffer ? new Uint8Array(input)
          : new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
        let out = "";
        for (let i = 0; i < bytes.length;) {
          const b = bytes[i];
          let code = 0xfffd, size = 1;
          if (b < 0x80) { code = b; }
          else if (b >= 0xc2 && b < 0xe0 && i + 1 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80) {
            code = ((b & 31) << 6) | (bytes[i + 1] & 63); size = 2;
          } else if (b >= 0xe0 && b < 0xf0 && i + 2 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80 && (bytes[i + 2] & 0xc0) === 0x80) {
            code = ((b & 15) << 12) | ((bytes[i + 1] & 63) << 6) | (bytes[i + 2] & 63); size = 3;
            if (code < 0x800 || (code >= 0xd800 && code <= 0xdfff)) code = 0xfffd;
          } else if (b >= 0xf0 && b < 0xf5 && i + 3 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80 && (bytes[i + 2] & 0xc0) === 0x80 && (bytes[i + 3] & 0xc0) === 0x80) {
            code = ((b & 7) << 18) | ((bytes[i + 1] & 63) << 12) | ((bytes[i + 2] & 63) << 6) | (bytes[i + 3] & 63); size = 4;
            if (code < 0x10000 || code > 0x10ffff) code = 0xfffd;
          }
          out += String.fromCodePoint(code);
          i += size;
        }
        return out;
      }
    };
  }
})
