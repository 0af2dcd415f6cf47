// expect: ok
// result: [true,false]
try { await tools.toy.add({ a: 'x' }); } catch (e) { return [String(e.stack).startsWith('ToolError: '), String(e.stack).includes('codemode:glue')]; }
