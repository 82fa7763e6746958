import { pino, type DestinationStream, type Logger } from 'pino';

// Secrets never reach a log line: fields under these names are replaced
// wherever they appear (top level or one level down), whatever the call site.
export const redactedPaths = ['token', 'bootstrapToken', 'credential', 'authorization', 'password', 'privateKey', 'keyPem'].flatMap((k) => [
  k,
  `*.${k}`,
]).concat(['headers.authorization', '*.headers.authorization', 'req.headers.authorization']);

export function createLogger(name: string, level: string, destination: DestinationStream): Logger {
  return pino({ name, level, base: { pid: process.pid }, redact: { paths: redactedPaths, censor: '[redacted]' } }, destination);
}

/** pino JSON on stderr, so stdout stays for command output. */
export function stderrLogger(name: string, level = process.env.HAWSER_LOG_LEVEL ?? 'info'): Logger {
  return createLogger(name, level, pino.destination({ fd: 2, sync: true }));
}
