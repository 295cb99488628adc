/**
 * A small server-sent-events reader over a fetch body.
 *
 * EventSource cannot send an Authorization header, and the control API wants a bearer token on
 * every request, so both the browser shim and Electron main read the stream themselves.
 * Runs in browsers and in Node >= 20 (web streams and TextDecoder are global in both).
 */

export interface SseMessage {
  event: string;
  data: string;
  id: string | null;
}

export class SseError extends Error {
  override name = 'SseError';
}

/** One event larger than this is refused: the daemon is local, but the limit keeps a bad stream from eating memory. */
export const SSE_MAX_EVENT_CHARS = 1 << 20;

export async function* readSse(
  body: ReadableStream<Uint8Array>,
  maxEventChars: number = SSE_MAX_EVENT_CHARS,
): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = '';
  let data: string[] = [];
  let dataChars = 0;
  let id: string | null = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      if (buffer.length > maxEventChars + 4096 && !/[\r\n]/.test(buffer)) {
        throw new SseError(`event stream line longer than ${maxEventChars} characters`);
      }
      // Lines end in \n, \r\n or \r; keep a trailing \r until we know whether \n follows.
      for (;;) {
        const m = /\r\n|\n|\r/.exec(buffer);
        if (!m) break;
        if (m[0] === '\r' && m.index === buffer.length - 1 && !done) break;
        const line = buffer.slice(0, m.index);
        buffer = buffer.slice(m.index + m[0].length);
        if (line === '') {
          if (data.length > 0) yield { event: event || 'message', data: data.join('\n'), id };
          event = '';
          data = [];
          dataChars = 0;
          continue;
        }
        if (line.startsWith(':')) continue; // comment / keep-alive
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') event = val;
        else if (field === 'data') {
          dataChars += val.length + 1;
          if (dataChars > maxEventChars) throw new SseError(`event larger than ${maxEventChars} characters`);
          data.push(val);
        } else if (field === 'id') id = val;
      }
      if (done) {
        if (data.length > 0) yield { event: event || 'message', data: data.join('\n'), id };
        return;
      }
    }
  } finally {
    // Early exit (consumer stopped, error): cancel so the underlying connection closes.
    await reader.cancel().catch(() => {});
  }
}
