// expect: ok
// result: 1
// Annex B: in a script, <!-- starts a comment.
return 1 <!-- 2;
