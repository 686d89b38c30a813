// The `azure_openai` provider: OpenAI models deployed on Azure, through the official
// openai SDK's AzureOpenAI client, for chat and for embeddings (the policy's models of
// kind: embedding).
//
// Why it is shaped like this:
// - Azure speaks OpenAI's chat completions and embeddings wire formats; only the URL
//   (/openai/deployments/<deployment>/chat/completions or …/embeddings, ?api-version=…)
//   and the `api-key` header differ, which the SDK's Azure client handles. Calls, streams,
//   embeddings and failures therefore go through openAIClientProvider, as the `openai`
//   provider's do: the same fields pass through, usage is Azure's own count, and 429s
//   keep their retry-after.
// - The deployment is the model's `upstream` name (the SDK puts the request's model in
//   the URL, for /embeddings as for /chat/completions), so one provider entry serves every
//   deployment of a resource; `deployment` pins one instead.
// - The client gets an explicit baseURL, key and api-version: AzureOpenAI would otherwise
//   read OPENAI_BASE_URL, AZURE_OPENAI_API_KEY, OPENAI_API_VERSION and AZURE_OPENAI_ENDPOINT
//   from the environment, and one policy would behave differently on different hosts.
import { AzureOpenAI } from 'openai';
import {
  createNodeFetch,
  describeURL,
  EXTRA_HEADERS_OPTION,
  openAIClientDefaults,
  openAIClientProvider,
  validateBaseURL,
  type OptionIssue,
  type OptionsFrom,
  type ProviderModule,
} from 'tiergate/plugin';

/** The latest generally available data-plane API version when this was written. */
const DEFAULT_API_VERSION = '2024-10-21';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['endpoint', 'api_key'],
  properties: {
    endpoint: {
      type: 'string',
      minLength: 1,
      description: 'The resource endpoint, e.g. https://my-resource.openai.azure.com (the SDK adds /openai/deployments/…).',
    },
    api_key: {
      type: 'string',
      minLength: 1,
      'x-secret': true,
      description: 'The resource key, sent as the api-key header. Usually "${AZURE_OPENAI_API_KEY}".',
    },
    api_version: {
      type: 'string',
      pattern: '^\\d{4}-\\d{2}-\\d{2}(-preview)?$',
      default: DEFAULT_API_VERSION,
      description: `The api-version query parameter (default ${DEFAULT_API_VERSION}).`,
    },
    deployment: {
      type: 'string',
      minLength: 1,
      description: "Send every model of this provider to this deployment; by default a model's upstream name is its deployment.",
    },
    headers: EXTRA_HEADERS_OPTION,
  },
} as const;

export type AzureOpenAIOptions = OptionsFrom<typeof optionsSchema>;

export default {
  meta: {
    id: 'azure_openai',
    kind: 'provider',
    contract: 1,
    description:
      "Azure OpenAI deployments through the official openai SDK's AzureOpenAI client (OpenAI's chat completions wire format, streaming and tools included, and embeddings).",
    options: optionsSchema,
    example: { endpoint: 'https://my-resource.openai.azure.com', api_key: 'your-azure-key', api_version: DEFAULT_API_VERSION },
    capabilities: ['embeds'],
  },

  validate(options): OptionIssue[] {
    return validateBaseURL(options.endpoint).map((issue) => ({ ...issue, path: ['endpoint'] }));
  },

  async create(options) {
    const baseURL = `${options.endpoint.replace(/\/+$/, '')}/openai`;
    const transport = createNodeFetch();
    const client = new AzureOpenAI({
      baseURL,
      apiKey: options.api_key,
      apiVersion: options.api_version ?? DEFAULT_API_VERSION,
      ...(options.deployment ? { deployment: options.deployment } : {}),
      defaultHeaders: options.headers,
      ...openAIClientDefaults(transport.fetch),
    });
    return openAIClientProvider(client, { name: 'azure_openai', where: describeURL(baseURL), secret: options.api_key, release: () => transport.close() });
  },
} satisfies ProviderModule<AzureOpenAIOptions>;
