import { readFileSync } from 'node:fs';
// eslint-disable-next-line no-restricted-imports -- the baseline is bare grpc-js by definition: no hawser logic
import * as grpc from '@grpc/grpc-js';
import { baselinePath, type FromBaselineServer } from './common.js';

// The baseline of bench/agents.ts: a bare grpc-js server with the hub's TLS
// certificate and the hub's server options (src/tunnel/grpc.ts), holding one
// idle bidi stream per client. No registration, no heartbeats, no store, no
// metrics: what any gRPC server pays to keep N TLS connections open.
//
// argv: <certFile> <keyFile> <keepaliveTimeMs> <keepaliveTimeoutMs>

const [certFile, keyFile, keepaliveTime, keepaliveTimeout] = process.argv.slice(2);
if (!certFile || !keyFile || !keepaliveTime || !keepaliveTimeout) {
  console.error('usage: baseline-server <certFile> <keyFile> <keepaliveTimeMs> <keepaliveTimeoutMs>');
  process.exit(2);
}

function send(m: FromBaselineServer): void {
  process.send?.(m);
}

let streams = 0;
const server = new grpc.Server({
  'grpc.max_receive_message_length': 8 * 1024 * 1024,
  'grpc.keepalive_time_ms': Number(keepaliveTime),
  'grpc.keepalive_timeout_ms': Number(keepaliveTimeout),
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
});
const identity = (b: Buffer) => b;
server.addService(
  {
    hold: {
      path: baselinePath,
      requestStream: true,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
      originalName: 'hold',
    },
  },
  {
    hold: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      streams++;
      let open = true;
      const gone = () => {
        if (!open) return;
        open = false;
        streams--;
      };
      // Headers tell the client its stream is up; then nothing but keepalive.
      call.sendMetadata(new grpc.Metadata());
      call.on('data', () => undefined);
      call.on('end', () => {
        gone();
        call.end();
      });
      call.on('cancelled', gone);
      call.on('error', gone);
      call.on('close', gone);
    },
  },
);
const credentials = grpc.ServerCredentials.createSsl(
  null,
  [{ private_key: readFileSync(keyFile), cert_chain: readFileSync(certFile) }],
  false,
);
server.bindAsync('127.0.0.1:0', credentials, (err, port) => {
  if (err) {
    send({ type: 'fatal', message: err.message });
    process.exit(1);
  }
  send({ type: 'listening', port });
});
setInterval(() => send({ type: 'stats', streams }), 1_000);
process.on('disconnect', () => process.exit(0));
