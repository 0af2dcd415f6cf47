// expect: ok
// result: []
return Object.getOwnPropertySymbols(globalThis).map(String).filter((s) => !s.includes('toStringTag'));
