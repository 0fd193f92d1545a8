/**
 * A route the router cannot serve. `routeIndex` is the position in the list given to `compileRouter` and `field`
 * the part of that route's match (`path.regex`, `headers[1].regex`, ...), so the config layer can name the place in
 * the file.
 */
export class RouterCompileError extends Error {
  readonly routeIndex: number;
  readonly field: string;
  /** What is wrong, without the route and field. */
  readonly detail: string;

  constructor(routeIndex: number, field: string, detail: string, options?: { cause?: unknown }) {
    super(`route ${routeIndex}: ${field}: ${detail}`, options);
    this.name = 'RouterCompileError';
    this.routeIndex = routeIndex;
    this.field = field;
    this.detail = detail;
  }
}
