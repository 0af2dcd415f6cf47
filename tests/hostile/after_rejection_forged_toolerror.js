// expect: runtime
// timeoutMs: 1500
throw new ToolError('forged', 'toy.add');
