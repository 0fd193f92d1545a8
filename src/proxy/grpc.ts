/**
 * gRPC on the request path: what kind of gRPC a request is, its deadline (`grpc-timeout`), and the gRPC-Web
 * translation (content types, base64 for grpc-web-text, trailers as the 0x80 frame). The exchange calls these;
 * nothing here allocates for a request that is not gRPC.
 */
import { Transform, type TransformCallback } from 'node:stream';

/** Not gRPC. */
export const GRPC_NONE = 0;
/** application/grpc[+…] */
export const GRPC = 1;
/** application/grpc-web[+…] (binary) */
export const GRPC_WEB = 2;
/** application/grpc-web-text[+…] (base64) */
export const GRPC_WEB_TEXT = 3;
export type GrpcKind = typeof GRPC_NONE | typeof GRPC | typeof GRPC_WEB | typeof GRPC_WEB_TEXT;

/** The gRPC kind of a request by its content type; GRPC_NONE for anything else. */
export function grpcKindOf(contentType: string | undefined): GrpcKind {
  if (contentType === undefined || contentType.length < 16) return GRPC_NONE;
  // Fast reject: every kind starts with `application/grpc`.
  if (contentType.charCodeAt(12) !== 103 /* g */ || !contentType.startsWith('application/grpc'))
    return GRPC_NONE;
  const next = contentType.charCodeAt(16);
  if (Number.isNaN(next) || next === 43 /* + */ || next === 59 /* ; */) return GRPC;
  if (!contentType.startsWith('-web', 16)) return GRPC_NONE;
  const after = contentType.charCodeAt(20);
  if (Number.isNaN(after) || after === 43 || after === 59) return GRPC_WEB;
  if (!contentType.startsWith('-text', 20)) return GRPC_NONE;
  const last = contentType.charCodeAt(25);
  return Number.isNaN(last) || last === 43 || last === 59 ? GRPC_WEB_TEXT : GRPC_NONE;
}

/** The `+proto`-style suffix of a gRPC content type ('' for none), parameters dropped. */
function suffixOf(contentType: string, kind: GrpcKind): string {
  const start = kind === GRPC ? 16 : kind === GRPC_WEB ? 20 : 25;
  if (contentType.charCodeAt(start) !== 43 /* + */) return '';
  const semi = contentType.indexOf(';', start);
  return contentType.slice(start, semi === -1 ? undefined : semi);
}

/** The content type a gRPC-Web request goes upstream with: `application/grpc` and its suffix. */
export function upstreamContentType(contentType: string, kind: GrpcKind): string {
  return `application/grpc${suffixOf(contentType, kind)}`;
}

/** The content type of a gRPC-Web reply for a gRPC one from upstream. */
export function webContentType(upstream: string | undefined, kind: GrpcKind): string {
  const k = upstream === undefined ? GRPC_NONE : grpcKindOf(upstream);
  const suffix = k === GRPC ? suffixOf(upstream!, k) : '+proto';
  return `application/grpc-web${kind === GRPC_WEB_TEXT ? '-text' : ''}${suffix === '' ? '+proto' : suffix}`;
}

/** The gRPC content type Trellis's own error replies carry for a request of this kind. */
export function errorContentType(kind: GrpcKind): string {
  return kind === GRPC
    ? 'application/grpc'
    : kind === GRPC_WEB
      ? 'application/grpc-web+proto'
      : 'application/grpc-web-text+proto';
}

const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const TIMEOUT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/** `grpc-timeout` (e.g. `250m`, `5S`) in ms, rounded up (at least 1); -1 when malformed. */
export function parseGrpcTimeout(value: string): number {
  const m = TIMEOUT.exec(value);
  if (m === null) return -1;
  return Math.max(1, Math.ceil(Number(m[1]) * TIMEOUT_MS[m[2]!]!));
}

/** ms as a `grpc-timeout` value (at most 8 digits, as the spec says). */
export function formatGrpcTimeout(ms: number): string {
  return ms <= 99_999_999 ? `${ms}m` : `${Math.ceil(ms / 1000)}S`;
}

/**
 * The trailer frame of gRPC-Web: flag 0x80, a 4-byte length, then the trailers as an HTTP/1.1 header block with
 * lower-case names. `fields` is a flat [name, value, …] list.
 */
export function trailerFrame(fields: ReadonlyArray<Buffer | string>): Buffer {
  let block = '';
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!.toString().toLowerCase();
    block += `${name}: ${fields[i + 1]!.toString()}\r\n`;
  }
  const body = Buffer.from(block, 'latin1');
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0x80;
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return frame;
}

/** Decodes a grpc-web-text request body: base64 in any chunking, with padding between messages allowed. */
export class Base64Decoder extends Transform {
  #rest = '';
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const text = this.#rest + chunk.toString('latin1');
    // Decode whole 4-character groups; a group that ends in padding closes one base64 run, the next starts afresh.
    const whole = text.length - (text.length % 4);
    this.#rest = text.slice(whole);
    if (whole === 0) {
      cb();
      return;
    }
    if (!/^[A-Za-z0-9+/=\r\n]*$/.test(text.slice(0, whole))) {
      cb(
        Object.assign(new Error('grpc-web-text body is not base64'), { trellisCode: 'bad_request' as const }),
      );
      return;
    }
    cb(null, decodeGroups(text.slice(0, whole)));
  }
  override _flush(cb: TransformCallback): void {
    if (this.#rest.trim() !== '') {
      cb(
        Object.assign(new Error('grpc-web-text body ends mid base64 group'), {
          trellisCode: 'bad_request' as const,
        }),
      );
      return;
    }
    cb();
  }
}

/** Base64 text of whole groups, where any group may end with padding (several padded runs concatenated). */
function decodeGroups(text: string): Buffer {
  if (text.indexOf('=') === -1 || text.indexOf('=') >= text.length - 2) return Buffer.from(text, 'base64');
  const parts: Buffer[] = [];
  let from = 0;
  for (let i = 0; i < text.length; i += 4) {
    if (text.charCodeAt(i + 3) === 61 /* = */) {
      parts.push(Buffer.from(text.slice(from, i + 4), 'base64'));
      from = i + 4;
    }
  }
  if (from < text.length) parts.push(Buffer.from(text.slice(from), 'base64'));
  return Buffer.concat(parts);
}

/** Encodes a grpc-web-text response body as one base64 run: bytes carried over to whole 3-byte groups. */
export class Base64Encoder {
  #rest: Buffer | undefined = undefined;
  /** Base64 of what can be encoded now (may be ''). */
  push(chunk: Buffer): string {
    const data = this.#rest === undefined ? chunk : Buffer.concat([this.#rest, chunk]);
    const whole = data.length - (data.length % 3);
    this.#rest = whole === data.length ? undefined : data.subarray(whole);
    return whole === 0 ? '' : data.toString('base64', 0, whole);
  }
  /** The rest, padded, and then `tail` (the trailer frame) as a run of its own. */
  end(tail: Buffer | undefined): string {
    const rest = this.#rest === undefined ? '' : this.#rest.toString('base64');
    this.#rest = undefined;
    return tail === undefined ? rest : rest + tail.toString('base64');
  }
}
