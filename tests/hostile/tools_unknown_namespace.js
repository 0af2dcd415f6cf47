// expect: tool
return await tools.nope.x({});
