// About how many bytes of JSON the rows a repository returned will take:
// strings by length, JSON values walked without recursion, everything else a
// few bytes. Cheap enough for every call (a page of 20 short rows: under a
// microsecond) and without allocations: a list of rows and each row's columns
// are read in place; nested values (JSON columns, arrays) wait on one stack
// the module keeps (the walk is synchronous, so no two walks share it).
const pending: object[] = [];

export function approximateBytes(value: unknown): number {
  pending.length = 0; // nothing left by a walk that threw
  let bytes = isComposite(value) ? compositeBytes(value) : scalarBytes(value);
  while (pending.length > 0) bytes += compositeBytes(pending.pop()!);
  return bytes;
}

/** An array's items or an object's keys and values, one level: rows of a list are read in place, deeper values pushed. */
function compositeBytes(value: object): number {
  if (Array.isArray(value)) {
    let bytes = 2 + value.length;
    for (const item of value) {
      if (!isComposite(item)) bytes += scalarBytes(item);
      else if (Array.isArray(item)) pending.push(item);
      else bytes += objectBytes(item);
    }
    return bytes;
  }
  return objectBytes(value);
}

function objectBytes(object: object): number {
  let bytes = 0;
  // for…in over own keys: no entry arrays (Object.entries allocated ~5 KB a Q2 request)
  for (const key in object) {
    if (!Object.hasOwn(object, key)) continue;
    const value = (object as Record<string, unknown>)[key];
    bytes += key.length + 4;
    if (isComposite(value)) pending.push(value);
    else bytes += scalarBytes(value);
  }
  return bytes;
}

/** An array or a plain object (a Date or a Buffer counts as a scalar). */
function isComposite(value: unknown): value is object {
  return value !== null && typeof value === 'object' && !(value instanceof Date) && !Buffer.isBuffer(value);
}

function scalarBytes(value: unknown): number {
  if (typeof value === 'string') return value.length + 2;
  if (value instanceof Date) return 26;
  if (Buffer.isBuffer(value)) return value.length;
  return 8;
}
