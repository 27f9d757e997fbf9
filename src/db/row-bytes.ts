// About how many bytes of JSON the rows a repository returned will take:
// strings by length, JSON values walked without recursion, everything else a
// few bytes. Cheap enough for every call (a page of 20 short rows: under a microsecond).
export function approximateBytes(value: unknown): number {
  let bytes = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const current = stack.pop();
    if (typeof current === 'string') bytes += current.length + 2;
    else if (current === null || typeof current !== 'object') bytes += 8;
    else if (current instanceof Date) bytes += 26;
    else if (Buffer.isBuffer(current)) bytes += current.length;
    else if (Array.isArray(current)) {
      bytes += 2 + current.length;
      for (const item of current) stack.push(item);
    } else {
      // for…in over own keys: no entry arrays (Object.entries allocated ~5 KB a Q2 request)
      for (const key in current) {
        if (!Object.hasOwn(current, key)) continue;
        bytes += key.length + 4;
        stack.push((current as Record<string, unknown>)[key]);
      }
    }
  }
  return bytes;
}
