import { pino, type Logger } from 'pino';

/** pino JSON on stderr, so stdout stays for command output. */
export function stderrLogger(name: string, level = process.env.HAWSER_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}
