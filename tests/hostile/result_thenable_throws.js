// expect: runtime
return { then() { throw new Error('boom'); } };
