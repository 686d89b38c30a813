// The policy version: a content hash of everything a compiled policy is made of (the
// file, its interpolated values, every plugin, the files plugins read). compile.ts stamps
// it on each runtime; reload.ts compares it with the fingerprint of what is on disk to
// skip a reload when nothing changed.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { discoverPlugins, type PluginCatalogue } from './plugins.ts';
import { pluginRoots } from './plugin-sites.ts';
import { readPolicySource, type PolicySource } from './source.ts';

/** The version from the file, its interpolated values (`dataAsRead`, before defaults are filled in) and every plugin. */
export function versionOf(source: PolicySource, dataAsRead: string, catalogue: PluginCatalogue): string {
  return createHash('sha256').update(source.text).update('\0').update(dataAsRead).update('\0').update(catalogue.hash).digest('hex').slice(0, 12);
}

/** The version extended by the content of the files plugins read (model artifacts), when there are any. */
export function withFiles(version: string, files: readonly string[]): string {
  if (files.length === 0) return version;
  const hash = createHash('sha256').update(version);
  for (const file of files) {
    hash.update('\0').update(file).update('\0');
    try {
      hash.update(readFileSync(file));
    } catch {
      hash.update('(unreadable)');
    }
  }
  return hash.digest('hex').slice(0, 12);
}

/**
 * The version the policy on disk would have, without building it: lets a reload with
 * nothing changed be skipped. null when the policy cannot even be read.
 */
export function policyFingerprint(
  configFile: string,
  options: { env?: NodeJS.ProcessEnv; builtinPluginRoot?: string },
  watchFiles: readonly string[] = [],
): string | null {
  try {
    const source = readPolicySource(configFile, options.env);
    return withFiles(
      versionOf(source, JSON.stringify(source.data), discoverPlugins(pluginRoots(source.data, source, options.builtinPluginRoot).roots)),
      watchFiles,
    );
  } catch {
    return null;
  }
}
