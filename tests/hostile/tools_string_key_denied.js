// expect: policy
return await tools['toy']['fail']({ reason: 'x' });
