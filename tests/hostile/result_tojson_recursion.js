// expect: runtime|output
const o = { toJSON() { return { o: this }; } };
return o;
