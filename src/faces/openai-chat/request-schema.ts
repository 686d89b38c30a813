// Checks a chat request body against schemas/chat-request.schema.json. Only the fields
// tiergate reads are checked; everything else passes through to the provider.
import AjvModule, { type ErrorObject } from 'ajv';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TiergateError } from '../../common/errors.ts';
import type { ChatBody } from '../../pipeline/route.ts';

const Ajv = AjvModule.default ?? (AjvModule as unknown as typeof AjvModule.default);
const schema = JSON.parse(readFileSync(fileURLToPath(new URL('../../../schemas/chat-request.schema.json', import.meta.url)), 'utf8')) as object;
// One error is enough for a client, and stopping at the first keeps bad requests cheap.
const validate = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true }).compile(schema);

/** Where in the body an error is, as a client's param: messages[0].role. */
export function paramOf(error: ErrorObject): string {
  let out = '';
  for (const segment of error.instancePath.split('/').slice(1)) out += /^\d+$/.test(segment) ? `[${segment}]` : (out ? '.' : '') + segment;
  if (error.keyword === 'required') out += (out ? '.' : '') + String((error.params as { missingProperty: string }).missingProperty);
  return out;
}

/** What is wrong there, in words. */
export function describe(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>;
  if (error.keyword === 'required') return 'is required';
  if (error.keyword === 'enum') return `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  if (error.keyword === 'type') return `must be of type ${String(params.type).replace(/,/g, ' or ')}`;
  return error.message ?? 'is invalid';
}

export function checkChatBody(body: unknown): ChatBody {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new TiergateError('TG_ERR_REQUEST_INVALID', { reason: 'the request body must be a JSON object' });
  if (!validate(body)) {
    const error = (validate.errors ?? [])[0];
    const param = error ? paramOf(error) : '';
    throw new TiergateError(
      'TG_ERR_REQUEST_INVALID',
      { reason: error ? `${param || 'body'} ${describe(error)}` : 'invalid body' },
      { param: param || undefined },
    );
  }
  return body as ChatBody;
}
