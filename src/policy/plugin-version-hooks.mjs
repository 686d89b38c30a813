// Module resolve hook (registered by src/policy/plugins.ts). Two jobs:
//
// 1. The SDK entries. A plugin imports 'tiergate/plugin' (and a team's tests
//    'tiergate/testing'); wherever the plugin lives, even in a folder with no tiergate in
//    its node_modules, the specifier resolves to the running gateway's own SDK module, so
//    the plugin and the gateway share one module instance (`instanceof UpstreamError`
//    holds) and a team needs no install for its plugin to load.
// 2. Versions. A plugin's entry is imported with its folder's content hash in the URL,
//    so an edited plugin loads afresh on reload. This hook carries that version to every
//    file the plugin imports from inside its own folder: without it an edited helper file
//    would keep running from the module cache. Files outside the folder (tiergate's src/,
//    node_modules) stay shared.
// Plain JavaScript: hooks run in the loader thread, before any TypeScript support.
const VERSION = 'tiergate-plugin';
const ROOT = 'tiergate-root';

/** SDK specifier → URL of the gateway's own module; given by plugins.ts through register(..., { data }). */
let sdkEntries = new Map();

export async function initialize(data) {
  sdkEntries = new Map(Object.entries(data?.sdkEntries ?? {}));
}

export async function resolve(specifier, context, nextResolve) {
  const sdkEntry = sdkEntries.get(specifier);
  if (sdkEntry !== undefined) return { url: sdkEntry, shortCircuit: true };
  const result = await nextResolve(specifier, context);
  const parent = context.parentURL;
  if (!parent || !parent.includes(`${VERSION}=`) || !result.url.startsWith('file:')) return result;
  const parentURL = new URL(parent);
  const version = parentURL.searchParams.get(VERSION);
  const root = parentURL.searchParams.get(ROOT);
  if (!version || !root) return result;
  const child = new URL(result.url);
  if (!`file://${child.pathname}`.startsWith(root)) return result;
  child.searchParams.set(VERSION, version);
  child.searchParams.set(ROOT, root);
  return { ...result, url: child.href };
}
