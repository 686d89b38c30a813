// POST /v1/embeddings: OpenAI's embeddings API in front of the pipeline
// (src/pipeline/embeddings.ts). Mounted behind the /v1 key check, so the caller is known
// before the body is read; this face checks the body (schemas/embeddings-request.schema.json),
// authorizes the route or model it names as the chat face does, and renders the vectors
// in OpenAI's shape, as floats or, when asked (the openai SDK asks by default), base64.
import type http from 'node:http';
import express from 'express';
import AjvModule from 'ajv';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TiergateError } from '../../common/errors.ts';
import type { RuntimeManager } from '../../policy/reload.ts';
import type { Runtime } from '../../policy/runtime.ts';
import type { GatewayKey } from '../../policy/gateway-auth.ts';
import { ClientGone } from '../../pipeline/cancellation.ts';
import { EmbeddingsExchange, type Embedded, type EmbeddingsBody } from '../../pipeline/embeddings.ts';
import type { PipelineServices } from '../../pipeline/exchange.ts';
import { authorizeChatTarget, callerOf } from '../auth.ts';
import { describe, paramOf } from '../openai-chat/request-schema.ts';
import { readBody } from '../read-body.ts';
import { lastResort, sendError, sendJson } from '../respond.ts';
import { HEADER, answerFailure } from '../tiergate-headers.ts';

export const EMBEDDINGS_PATH = '/v1/embeddings';

const Ajv = AjvModule.default ?? (AjvModule as unknown as typeof AjvModule.default);
const schema = JSON.parse(readFileSync(fileURLToPath(new URL('../../../schemas/embeddings-request.schema.json', import.meta.url)), 'utf8')) as object;
const validate = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true }).compile(schema);

/** The body, checked; a client error names the field. */
export function checkEmbeddingsBody(body: unknown): EmbeddingsBody {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new TiergateError('TG_ERR_REQUEST_INVALID', { reason: 'the request body must be a JSON object' });
  if (validate(body)) return body as EmbeddingsBody;
  const error = (validate.errors ?? [])[0];
  const param = error ? paramOf(error) : '';
  // input's shapes are alternatives: the first one's complaint ("must be string") would mislead.
  const reason =
    param.startsWith('input') && error?.keyword !== 'required'
      ? 'input must be a non-empty string, an array of 1 to 2048 non-empty strings, an array of token ids, or an array of 1 to 2048 such arrays'
      : error
        ? `${param || 'body'} ${describe(error)}`
        : 'invalid body';
  throw new TiergateError('TG_ERR_REQUEST_INVALID', { reason }, { param: param.startsWith('input') ? 'input' : param || undefined });
}

/** A vector as OpenAI's base64 encoding_format sends it: little-endian float32s. */
function base64Of(vector: readonly number[]): string {
  const buffer = Buffer.alloc(vector.length * 4);
  for (let i = 0; i < vector.length; i++) buffer.writeFloatLE(vector[i], i * 4);
  return buffer.toString('base64');
}

/** OpenAI's embeddings response; `model` names the policy model that answered. */
function rendered(embedded: Embedded, format: EmbeddingsBody['encoding_format']): unknown {
  const { result, model } = embedded;
  return {
    object: 'list',
    data: result.data.map((item) => ({ object: 'embedding', index: item.index, embedding: format === 'base64' ? base64Of(item.embedding) : item.embedding })),
    model: model.spec.name,
    usage: { prompt_tokens: result.usage.prompt_tokens, total_tokens: result.usage.total_tokens },
  };
}

function answerHeaders(exchange: EmbeddingsExchange, embedded: Embedded): string[] {
  const headers: string[] = [];
  if (embedded.route) headers.push(HEADER.route, embedded.route.name);
  headers.push(HEADER.model, embedded.model.spec.name, HEADER.decision, exchange.requestId, HEADER.version, exchange.runtime.version);
  if (embedded.simulated) headers.push(HEADER.simulated, 'true');
  return headers;
}

async function handleEmbeddings(
  runtime: Runtime,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  services: PipelineServices,
  caller: GatewayKey | undefined,
): Promise<void> {
  const exchange = new EmbeddingsExchange(runtime, services, caller?.name);
  const onClose = () => {
    if (!res.writableFinished) exchange.client.abort(new ClientGone());
  };
  res.on('close', onClose);
  try {
    const body = checkEmbeddingsBody(await readBody(runtime, req, res));
    authorizeChatTarget(caller, runtime, body.model);
    const embedded = await exchange.run(body);
    sendJson(res, 200, rendered(embedded, body.encoding_format), answerHeaders(exchange, embedded));
    exchange.answered(embedded);
  } catch (err) {
    answerFailure(exchange, err, res, sendError);
  } finally {
    res.off('close', onClose);
  }
}

/** The face, on express behind the /v1 key check: each request on the runtime in force when it arrived, held to the end. */
export function embeddingsRouter(manager: RuntimeManager, services: PipelineServices): express.Router {
  const router = express.Router();
  router.post(EMBEDDINGS_PATH, (req, res) => {
    const runtime = manager.acquire();
    handleEmbeddings(runtime, req, res, services, callerOf(res))
      .catch((err: unknown) => lastResort(err, res, services.logger))
      .finally(() => runtime.leave());
  });
  return router;
}
