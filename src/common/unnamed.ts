// tsx compiles with esbuild's keepNames: every function expression bound to a name
// (`const onData = (chunk) => …`) is wrapped in `__name(fn, 'onData')`, an
// Object.defineProperty on a fresh function. Inside a function that runs per request
// that is a defineProperty per closure per request (~2 % of the gateway's CPU in the
// profile, on the chat path). A function passed as an argument is not wrapped, so the
// hot paths create their closures through this identity.

/** Returns `fn` itself: a closure created through it escapes esbuild's per-call `__name`. */
export function unnamed<T extends (...args: never[]) => unknown>(fn: T): T {
  return fn;
}
