// expect: timeout
// Joining empty strings allocates next to nothing: only the clock can stop it.
return new Array(1e8).join("").length;
