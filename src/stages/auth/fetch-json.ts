/**
 * One bounded HTTP exchange for the auth policies (JWKS, introspection, ext-authz): a deadline for the whole
 * exchange and a cap on the body, so that a slow or huge answer from a remote server costs a bounded amount.
 */
import { request } from 'undici';
import { z } from 'zod';

/** An http(s) URL. A pattern and a parse check rather than `z.url()`, whose JSON Schema `format` editors do not share. */
export const httpUrl = z
  .string()
  .regex(/^https?:\/\/[^\s/?#]+[^\s]*$/, { message: 'expected an http:// or https:// URL' })
  .refine((s) => URL.canParse(s), { message: 'expected an http:// or https:// URL' });

export interface BoundedResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

export interface BoundedRequest {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Whole exchange, ms. */
  timeout: number;
  /** Largest body read; a larger one is an error. */
  maxBytes: number;
}

export class FetchError extends Error {}

export async function boundedFetch(url: string, opts: BoundedRequest): Promise<BoundedResponse> {
  const signal = AbortSignal.timeout(opts.timeout);
  let res: Awaited<ReturnType<typeof request>>;
  try {
    res = await request(url, {
      method: opts.method ?? 'GET',
      headers: opts.headers,
      body: opts.body,
      signal,
    });
  } catch (err) {
    throw new FetchError(reason(err, signal, opts.timeout));
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > opts.maxBytes) {
        res.body.destroy();
        throw new FetchError(`answer larger than ${opts.maxBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof FetchError) throw err;
    throw new FetchError(reason(err, signal, opts.timeout));
  }
  return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks, size) };
}

function reason(err: unknown, signal: AbortSignal, timeout: number): string {
  if (signal.aborted) return `no answer within ${timeout}ms`;
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ECONNREFUSED') return 'connection refused';
  return e.code ?? e.message ?? String(err);
}
