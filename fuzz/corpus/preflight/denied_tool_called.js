// expect: tool
return await tools.toy["fa" + "il"]({ reason: "x" });
