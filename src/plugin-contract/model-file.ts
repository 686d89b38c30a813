// Reading a trained model (an artifact of `tiergate train`) named by a plugin's options:
// `model_path` (a file, relative to the policy, watched so that a retrained model
// reloads the policy) or `model` (inline). Shared by the classifier router and the
// learned gate so both report an unreadable or malformed model the same way, located at
// the option that named it.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { PluginContext } from './plugin-api.ts';

/**
 * The two option properties, for a plugin's option schema (spread into `properties`).
 * `made` names the command that writes the artifact, for the description.
 */
export function modelOptionProperties(made: string) {
  return {
    model_path: {
      type: 'string',
      minLength: 1,
      'x-path': true,
      description: `The model artifact written by ${made}, relative to the policy file. A change to it reloads the policy.`,
    },
    model: { type: 'object', additionalProperties: true, description: 'The artifact itself, inline (instead of model_path).' },
  } as const;
}

export interface ModelOptions {
  model_path?: string;
  model?: Record<string, unknown>;
}

/**
 * The artifact's data, checked by `problemsOf`; throws the context's located option error
 * otherwise. `howToMake` ends the message about a missing file ("train one with …").
 */
export function loadModelOption<T>(
  options: ModelOptions,
  ctx: PluginContext,
  problemsOf: (data: unknown) => Array<{ field: string; message: string }>,
  howToMake: string,
): T {
  const at = options.model_path !== undefined ? ['model_path'] : ['model'];
  let data: unknown = options.model;
  if (options.model_path !== undefined) {
    const file = path.resolve(ctx.baseDir, options.model_path);
    // Watched even when unreadable: fixing the file then reloads the policy.
    ctx.watchFile?.(file);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw ctx.optionError(at, `cannot read the model ${file}: ${(err as Error).message} (${howToMake})`);
    }
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw ctx.optionError(at, `the model ${file} is not JSON: ${(err as Error).message}`);
    }
  }
  const problems = problemsOf(data);
  if (problems.length) throw ctx.optionError(at, problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join('; '));
  return data as T;
}

/** The `validate` rule both plugins share: exactly one of the two options. */
export function oneModelOption(options: ModelOptions): Array<{ path: string[]; message: string }> {
  if ((options.model_path === undefined) === (options.model === undefined))
    return [{ path: [], message: 'give exactly one of model_path (a file from `tiergate train`) or model (the artifact inline)' }];
  return [];
}
