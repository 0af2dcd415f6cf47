// expect: ok
// result: []
return Object.getOwnPropertyNames(globalThis).filter((n) => /^(process|require|module|Deno|Bun|std|os|fs|net|child_process|__host|host)$/.test(n));
