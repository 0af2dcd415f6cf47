// expect: ok
const args = Object.create({ a: 1 });
args.b = 2;
try { return (await tools.toy.add(args)).sum; } catch (e) { return e.schemaPath ?? e.message; }
