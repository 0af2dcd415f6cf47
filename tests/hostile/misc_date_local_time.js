// expect: ok
// result: {"offset":0,"hours":true,"string":true,"locale":true,"timeString":true}
// Local time needs the zone's data, which the worker loads before its lockdown (UTC
// unless codemode.timeZone names another): never a forbidden system call.
const d = new Date();
return {
  offset: d.getTimezoneOffset(),
  hours: d.getHours() === d.getUTCHours(),
  string: typeof d.toString() === "string" && String(d).length > 10,
  locale: typeof d.toLocaleString() === "string",
  timeString: typeof d.toTimeString() === "string" && typeof new Date(2020, 5, 1).getDate() === "number",
};
