// expect: runtime
ToolError.prototype.toString = () => { while (true) {} };
throw new Error("ordinary");
