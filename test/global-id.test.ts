// Global ids are base64url("Type:id") without padding: the encoder is btoa
// with the URL alphabet (src/nodes/global-id.ts). Every declared type name
// and id of any length (every padding case) encodes as Buffer's base64url
// does, and decodes back to the same type and id.
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
