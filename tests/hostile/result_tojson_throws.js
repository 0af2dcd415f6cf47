// expect: runtime
return { toJSON() { throw new Error("no json for you"); } };
