export type { ConfigError, ConfigIssue, ConfigPath, PathSegment } from './errors.js';
export { formatConfigPath } from './errors.js';
export { formatConfigError, formatConfigErrors } from './format.js';
export { CONFIG_SCHEMA_ID, configJsonSchema } from './json-schema.js';
export type { ConfigSource, LoadOptions, LoadResult, ValidateResult } from './load.js';
export { hashConfig, loadConfigFile, loadConfigText, validateConfig } from './load.js';
export { REDACTED, redactConfig } from './redact.js';
export * from './schema.js';
export { checkSemantics, endpointProblem, parseAddressOrCidr, type SemanticsOptions } from './semantics.js';
