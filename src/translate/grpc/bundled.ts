/**
 * Our own copies of the message definitions of google/api/http.proto, google/api/annotations.proto (the
 * `google.api.http` method option) and google/api/httpbody.proto, so that user protos importing them resolve without the googleapis repository.
 * Field numbers are those of the published schema; comments are ours.
 */

export const GOOGLE_API_HTTP = `syntax = "proto3";
package google.api;

// The HTTP rules of a service (service config form).
message Http {
  repeated HttpRule rules = 1;
  bool fully_decode_reserved_expansion = 2;
}

// How one RPC method maps to HTTP: a method and path template, which field the body fills, which field the
// response body is, and more bindings of the same method.
message HttpRule {
  string selector = 1;
  oneof pattern {
    string get = 2;
    string put = 3;
    string post = 4;
    string delete = 5;
    string patch = 6;
    CustomHttpPattern custom = 8;
  }
  string body = 7;
  string response_body = 12;
  repeated HttpRule additional_bindings = 11;
}

// A method other than the five above (for example HEAD or OPTIONS).
message CustomHttpPattern {
  string kind = 1;
  string path = 2;
}
`;

export const GOOGLE_API_ANNOTATIONS = `syntax = "proto3";
package google.api;

import "google/api/http.proto";
import "google/protobuf/descriptor.proto";

extend google.protobuf.MethodOptions {
  HttpRule http = 72295728;
}
`;

export const GOOGLE_API_HTTPBODY = `syntax = "proto3";
package google.api;

import "google/protobuf/any.proto";

// An arbitrary HTTP body: a transcoded method whose reply (or request body) is this message sends (or takes) the
// bytes as they are, with this content type, instead of JSON.
message HttpBody {
  string content_type = 1;
  bytes data = 2;
  repeated google.protobuf.Any extensions = 3;
}
`;
