// expect: runtime
return await eval("import('os')");
