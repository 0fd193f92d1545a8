export { compileRouter } from './compile.js';
export { RouterCompileError } from './compile-error.js';
export { normalizePath } from './normalize.js';
export type {
  MatchResult,
  PathMatchSpec,
  RouteMatchSpec,
  Router,
  RouterRequest,
  ValueMatchSpec,
} from './types.js';
