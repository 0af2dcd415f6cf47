// expect: runtime
return { get x() { throw new Error('boom'); } };
