/** The standard `workload.proto` (next to this file; copied into dist/ by `npm run build`), loaded once. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_PATH = join(dirname(fileURLToPath(import.meta.url)), 'workload.proto');

let definition: grpc.GrpcObject | undefined;

/** The `SpiffeWorkloadAPI` service definition (snake_case fields, as in the .proto). */
export function workloadService(): grpc.ServiceDefinition {
  definition ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true }),
  );
  return (definition.SpiffeWorkloadAPI as grpc.ServiceClientConstructor).service;
}
