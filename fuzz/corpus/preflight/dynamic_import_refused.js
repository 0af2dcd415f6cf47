// expect: runtime
return await import("fs");
