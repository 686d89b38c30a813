// The `openai` provider: anything that speaks OpenAI's chat completions wire format —
// OpenAI itself, and local servers such as vLLM, Ollama or LM Studio — and its
// embeddings (POST /embeddings, for the policy's models of kind: embedding).
//
// Why it is shaped like this:
// - Calls, streams and failures go through openAIClientProvider (the plugin SDK), which
//   the `azure_openai` provider shares: bodies pass through untouched, and every failure
//   becomes an UpstreamError the executor can act on.
// - The SDK is built with retries off and a very long timeout (openAIClientDefaults): the
//   host owns timeouts (through the call's signal), retries and failover.
// - Only explicit options configure the client. The SDK would otherwise pick up
//   OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_ORG_ID and OPENAI_PROJECT_ID from the
//   environment, which would make one policy behave differently on different hosts.
//   (The policy can still say `${OPENAI_API_KEY}` to read a key from the environment.)
import OpenAI from 'openai';
import {
  configuredKey,
  createNodeFetch,
  describeURL,
  openAIClientDefaults,
  openAIClientProvider,
  validateBaseURL,
  wireOptionProperties,
  type OptionsFrom,
  type OptionIssue,
  type ProviderModule,
} from 'tiergate/plugin';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: wireOptionProperties('Base URL of the API, up to and including /v1. Defaults to https://api.openai.com/v1.'),
} as const;

/** api_key is required by OpenAI; local OpenAI-compatible servers usually need none. base_url defaults to https://api.openai.com/v1. */
export type Options = OptionsFrom<typeof optionsSchema>;

const DEFAULT_BASE_URL = 'https://api.openai.com/v1';
/** Sent when no key is configured: the SDK insists on one, and local servers ignore it. */
const NO_KEY = 'not-needed';

function validate(options: Readonly<Options>): OptionIssue[] {
  return validateBaseURL(options.base_url);
}

export default {
  meta: {
    id: 'openai',
    kind: 'provider',
    contract: 1,
    description:
      'Calls an OpenAI-compatible chat completions API: OpenAI, or a local server such as vLLM, Ollama or LM Studio. ' +
      'OpenAI needs api_key; local servers usually do not.',
    options: optionsSchema,
    example: { api_key: 'sk-your-key', base_url: DEFAULT_BASE_URL },
    capabilities: ['embeds'],
  },

  validate,

  async create(options, ctx) {
    const baseURL = options.base_url ?? DEFAULT_BASE_URL;
    const secret = configuredKey(options);
    const apiKey = secret ?? NO_KEY;
    if (secret === undefined && baseURL === DEFAULT_BASE_URL) {
      ctx.logger.warn(`${ctx.at}: no api_key is set, so OpenAI will reject every request with 401`);
    }
    // The SDK's transport, not the SDK: node:http with this instance's own keep-alive
    // pool costs a fraction of the built-in fetch per call (src/plugin-contract/node-fetch.ts).
    const transport = createNodeFetch();
    const client = new OpenAI({
      apiKey,
      baseURL,
      defaultHeaders: options.headers,
      ...openAIClientDefaults(transport.fetch),
      organization: options.organization ?? null,
    });
    return openAIClientProvider(client, { name: 'openai', where: describeURL(baseURL), secret, release: () => transport.close() });
  },
} satisfies ProviderModule<Options>;
