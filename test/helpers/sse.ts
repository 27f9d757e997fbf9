// GraphQL over SSE as a client reads it: a text/event-stream body cut into
// its messages (the event's name and its data lines joined) as they arrive.
// The tests' SSE client (live.ts) and bench:events' subscribers read with it.

export type SseMessage = { readonly event: string | undefined; readonly data: string };

/** Each message of the stream; a comment (a keep-alive) is a message without an event. Ends with the body. */
export async function* sseMessages(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const message = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (\w+)$/m.exec(message)?.[1];
      const data = message.split('\n').filter((line) => line.startsWith('data:')).map((line) => line.slice(5).trimStart()).join('\n');
      yield { event, data };
    }
  }
}
