// expect: policy
if (Math.random() > 2) await tools.toy.fail({ reason: 'x' });
return 'unreached';
