/** `routes[].translate` with `type: grpc`: REST → gRPC transcoding (docs/transcoding.md). */
import { z } from 'zod';
import { byteSize } from '../../config/primitives.js';

const qualifiedName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/, {
  message: 'expected a fully qualified protobuf name such as "library.v1.LibraryService"',
});

export const grpcTranslateSchema = z
  .strictObject({
    protos: z
      .array(z.string().min(1))
      .default([])
      .describe(
        "`.proto` files describing the services (relative to the config file). Imports resolve against the file's folder, `includePaths`, and the bundled google/api/{annotations,http}.proto and google/protobuf well-known types.",
      ),
    includePaths: z
      .array(z.string().min(1))
      .default([])
      .describe('Folders searched for imports of `protos` (relative to the config file).'),
    descriptorSet: z
      .string()
      .min(1)
      .optional()
      .describe(
        'A binary FileDescriptorSet (`protoc --include_imports --descriptor_set_out=...`), instead of or besides `protos`.',
      ),
    services: z
      .array(qualifiedName)
      .optional()
      .describe(
        'Fully qualified services to expose (`package.Service`); absent: every service in the files.',
      ),
    stream: z
      .enum(['ndjson', 'sse'])
      .default('ndjson')
      .describe(
        'How a server-streaming method reaches the client: newline-delimited JSON (application/x-ndjson) or Server-Sent Events (text/event-stream). A request whose `Accept` names text/event-stream (an EventSource) gets SSE either way.',
      ),
    defaultMapping: z
      .boolean()
      .default(true)
      .describe(
        'Also expose every method as `POST /package.Service/Method` with the request message as the JSON body (methods with `google.api.http` rules keep those too).',
      ),
    maxBodyBytes: byteSize
      .prefault('1MiB')
      .describe(
        "Largest JSON request body (413 body_too_large beyond); the route's `limits.maxBodyBytes` caps it.",
      ),
    maxResponseBytes: byteSize
      .prefault('4MiB')
      .describe('Largest gRPC response message (502 upstream_protocol_error beyond).'),
    ignoreUnknownQueryParameters: z
      .boolean()
      .default(false)
      .describe(
        'Ignore query parameters that name no field of the request message; off: such a request gets 400 transcode_bad_request.',
      ),
    emitDefaults: z
      .boolean()
      .default(false)
      .describe(
        'Write fields that hold their default value (0, "", false, empty lists) in JSON responses; off: omitted, as the proto3 JSON mapping does by default.',
      ),
    protoFieldNames: z
      .boolean()
      .default(false)
      .describe(
        'Write the proto field names (`page_size`) in JSON responses instead of lowerCamelCase `json_name`s.',
      ),
  })
  .refine((c) => c.protos.length > 0 || c.descriptorSet !== undefined, {
    message: 'expected `protos` (.proto files) or a `descriptorSet`',
  })
  .describe('REST → gRPC transcoding by `google.api.http` rules (docs/transcoding.md).');

export type GrpcTranslateConfig = z.output<typeof grpcTranslateSchema>;
