// expect: memory
return ('ab'.repeat(2 ** 24)).match(/a/g).length;
