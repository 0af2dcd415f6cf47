// expect: runtime
// timeoutMs: 500
throw new ToolError('forged', 'toy.add');
