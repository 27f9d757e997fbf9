// Global ids are base64url("Type:id") without padding: the encoder is btoa
// with the URL alphabet (src/nodes/global-id.ts). Every declared type name
// and id of any length (every padding case) encodes as Buffer's base64url
// does, and decodes back to the same type and id; the decoder (atob) accepts
// nothing Buffer's base64url decoding refused, and decodes it the same.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import '../src/graphql/schema.ts'; // declares the node types (the registry decodeGlobalId reads)
import { decodeGlobalId, encodeGlobalId, nodeTypeNamed } from '../src/nodes/global-id.ts';

const TYPES = ['Agent', 'ApiKey', 'AuditEvent', 'Context', 'FineTuningJob', 'Member', 'Invitation', 'Session', 'Task'].filter((name) => nodeTypeNamed(name)?.table.idType === 'uuid');

it('knows the node types it is tested with', () => {
  expect(TYPES.length).toBeGreaterThanOrEqual(5);
});

it('encodes as base64url without padding, for every type name and uuid', () => {
  fc.assert(
    fc.property(fc.constantFrom(...TYPES), fc.uuid(), (type, id) => {
      const encoded = encodeGlobalId(type, id);
      expect(encoded).toBe(Buffer.from(`${type}:${id}`).toString('base64url'));
      expect(encoded).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodeGlobalId(encoded)).toEqual({ typename: type, id });
    }),
    { numRuns: 2000 },
  );
});

const ascii = fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((code) => String.fromCharCode(code)), maxLength: 60 });

it('encodes any ASCII text the way Buffer does (each padding case, the URL alphabet)', () => {
  fc.assert(
    fc.property(ascii, ascii, (type, id) => {
      expect(encodeGlobalId(type, id)).toBe(Buffer.from(`${type}:${id}`).toString('base64url'));
    }),
    { numRuns: 2000 },
  );
});

/** What the decoder did with Buffer (base64url, then UTF-8): the reference the atob decoder is held to. */
function decodedByBuffer(globalId: string): { typename: string; id: string } | undefined {
  if (globalId.length > 200) return undefined;
  const [typename, id, ...rest] = Buffer.from(globalId, 'base64url').toString('utf8').split(':');
  const node = typename ? nodeTypeNamed(typename) : undefined;
  if (rest.length > 0 || !node || !id || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) return undefined;
  return { typename: typename!, id: id.toLowerCase() };
}

it('decodes only what Buffer decoded, and to the same: any text, garbled and cut ids; issued ids in either alphabet always', () => {
  const real = fc.tuple(fc.constantFrom(...TYPES), fc.uuid()).map(([type, id]) => encodeGlobalId(type, id));
  const garbled = fc.tuple(real, fc.nat(), fc.string({ maxLength: 3 })).map(([id, at, text]) => id.slice(0, at % (id.length + 1)) + text + id.slice(at % (id.length + 1)));
  const variants = real.chain((id) => fc.constantFrom(id.slice(0, -1), id.slice(1), id.toUpperCase(), `${id}=`, ` ${id}`));
  fc.assert(
    fc.property(fc.oneof(real, garbled, variants, fc.string({ maxLength: 80 }), ascii), (globalId) => {
      const decoded = decodeGlobalId(globalId);
      // Stricter where Buffer skipped what is not base64 (a ':' or a space inside an id): such a text names nothing.
      if (decoded !== undefined) expect(decoded).toEqual(decodedByBuffer(globalId));
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(real, (globalId) => {
      expect(decodeGlobalId(globalId)).toEqual(decodedByBuffer(globalId));
      expect(decodeGlobalId(globalId.replaceAll('-', '+').replaceAll('_', '/'))).toEqual(decodedByBuffer(globalId));
    }),
    { numRuns: 2000 },
  );
});
