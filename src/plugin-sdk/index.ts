// The plugin SDK: the one door a plugin uses, published as `tiergate/plugin`. Built-in
// plugins and a team's own import only this entry, so what a plugin may rely on is
// written here and nowhere else; everything else in src/ can move without breaking a
// plugin. The gateway hands a plugin this very module instance (see the resolve hook in
// src/policy/plugin-version-hooks.mjs), so `instanceof UpstreamError` holds across it.
//
// The helpers below live in the rooms that own them and are re-exported, not copied:
// the gateway and its plugins keep one implementation of each.

// The contract: plugin modules, their instances, the chat shapes, PLUGIN_CONTRACT_VERSION,
// OptionsFrom, UpstreamError and the linear-time pattern compiler (policyPattern).
export * from '../plugin-contract/plugin-api.ts';

// Speaking OpenAI's wire format to an upstream: request bodies, option schema pieces,
// error mapping and redaction shared by the openai and openai_compatible providers.
export {
  asChatResult,
  asEmbeddingResult,
  asRecord,
  clip,
  completionBody,
  configuredKey,
  describeURL,
  embeddingBody,
  EXTRA_HEADERS_OPTION,
  parseRetryAfter,
  redactor,
  rootCause,
  streamBody,
  validateBaseURL,
  wireFailure,
  wireOptionProperties,
  type OpenAIWireOptions,
} from '../plugin-contract/openai-wire.ts';

// A provider over an openai SDK client (OpenAI or AzureOpenAI): calls, streams, failures.
export {
  OPENAI_SDK_TIMEOUT_MS,
  openAIClientDefaults,
  openAIClientProvider,
  openAISDKFailure,
  type OpenAIClientProviderOptions,
} from '../plugin-contract/openai-sdk.ts';

// Translating OpenAI chat and embeddings to another API: tools, tool-call arguments,
// unexpected replies, embeddings texts and the calls they are cut into.
export {
  alternatingTurns,
  deltaChunk,
  describeValue,
  embeddingTexts,
  isRecord,
  mapConcurrently,
  openAIToolDefinitions,
  tokenCount,
  toolCallArguments,
  upstreamEvents,
  usageChunk,
  type ChunkHead,
  type ToolDefinition,
  type Turn,
  type TurnBlocks,
} from '../plugin-contract/translation.ts';

// Token estimates and message text, as the gateway itself counts them.
export {
  embeddingInputs,
  estimateEmbeddingTokens,
  estimateMessagesTokens,
  estimateTextTokens,
  estimatedUsage,
  lastUserMessage,
  messageText,
  reportedOrEstimatedUsage,
} from '../plugin-contract/tokens.ts';

// Usage with cached, cache-written and reasoning tokens, each counted once, as costs read it.
export { cachedInputTokens, cacheWriteInputTokens, reasoningTokens, tokenUsage, type TokenCounts } from '../plugin-contract/usage-details.ts';

// Final answers by type (choice letter, number, code, JSON, text) and whether two agree:
// the agreement evaluator compares them, the learned gate reads their form.
export {
  ANSWER_TYPES,
  canonicalJson,
  choicePrompt,
  compareAnswers,
  detectType,
  extractChoice,
  extractCode,
  extractJson,
  extractNumber,
  hasFencedCode,
  normaliseText,
  parseNumber,
  sameNumber,
  tokenF1,
  type AnswerType,
  type AnswerTypeOption,
  type ChoicePrompt,
  type Code,
  type Comparison,
} from '../plugin-contract/answers.ts';

// A fetch over node:http(s) with a keep-alive pool, for SDK clients that take a fetch.
export { callerSignal, createNodeFetch, isAbortError, type NodeFetch, type NodeFetchOptions } from '../plugin-contract/node-fetch.ts';

// JSONata values as the policy reads them: truthiness, and the synchronous answer of a
// compiled expression when it has one (CompiledExpression.evaluateSync).
export { evaluateNow, isTruthy } from '../expressions/compile.ts';

// A seedable PRNG, so a randomised plugin (a bandit) can be made reproducible in tests.
export { mulberry32 } from '../common/random.ts';

// The learned classifier's artifact and features, computed by the same code that trains it.
export { artifactProblems, chooseTier, compileClassifier, type ClassifierArtifact, type CompiledClassifier } from '../analysis/learn/artifact.ts';
export { defaultFeatureSpec, specHash, type FeatureSpec } from '../analysis/learn/features.ts';
// The learned gate's model (tiergate train --gate) and the measures of an answer it reads.
export {
  compileGate,
  conversationText,
  gateArtifactProblems,
  GATE_ARTIFACT_FORMAT,
  type CompiledGate,
  type GateArtifact,
} from '../analysis/learn/gate-model.ts';
export { answerSpecHash, defaultAnswerFeatureSpec, measureAnswer, type AnswerFeatureSpec, type MeasuredAnswer } from '../analysis/learn/answer-features.ts';
// A trained model named by a plugin's model_path or model option, read and checked.
export { loadModelOption, modelOptionProperties, oneModelOption, type ModelOptions } from '../plugin-contract/model-file.ts';
// Each call's own abort signal, for a provider whose SDK takes one: dispose() aborts the calls in flight.
export { CallSignals, type CallSignal } from '../plugin-contract/call-signals.ts';

// Recorded outcomes (the JSONL format of ../shared/data), for a provider that replays them.
export {
  ROW_ID_FIELD,
  conversationKey,
  datasetOf,
  loadDataset,
  recordedCost,
  recordedUsage,
  type Dataset,
  type DatasetRow,
  type RecordedOutcome,
} from '../analysis/eval/dataset.ts';
