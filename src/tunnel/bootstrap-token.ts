import { ErrorCode, HawserError } from './errors.js';

// Bootstrap tokens follow kubeadm's shape (6.16 lower-case alphanumerics).
// Here rather than in the hub: the agent reads them too, and `hawser agent`
// must not load the hub's modules to do so.

export const bootstrapTokenPattern = /^[a-z0-9]{6}\.[a-z0-9]{16}$/;

/**
 * Bootstrap tokens from one source (a file, an environment variable): one per
 * line, blank lines and # comments ignored. None at all, or one of the wrong
 * shape, is refused: an empty file must never become the empty token.
 * Errors name the source and the line, never the token.
 */
export function parseBootstrapTokens(text: string, source: string): string[] {
  const tokens: string[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (!bootstrapTokenPattern.test(line)) {
      throw new HawserError(
        ErrorCode.InvalidBootstrapToken,
        `bootstrap token in ${source} (line ${i + 1}) must look like abcdef.0123456789abcdef ([a-z0-9]{6}.[a-z0-9]{16})`,
      );
    }
    tokens.push(line);
  }
  if (tokens.length === 0) throw new HawserError(ErrorCode.InvalidBootstrapToken, `${source} holds no bootstrap token`);
  return tokens;
}
