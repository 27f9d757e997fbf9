--! Previous: sha1:6a8ea035bbfb78696856d6d966b55d025b265e0a
--! Hash: sha1:126544a920624ae29db1ad5e3ef8372389ebf3d8
--! Message: an audit event is named in the API by a random uuid of its own, not the identity id all tenants share

-- An audit event's handle in the API: a random uuid of its own (app.audit_events.event_id), never the
-- identity id every tenant's events share. Two of tenant B's consecutive events had ids that differed
-- by the number of events all other tenants wrote in between (a side channel across tenants; the red
-- team's HOLE 3). The uuid is a handle, not content, so it is not hashed: a superuser who changes one
-- changes only how the API names the event, never what the chain proves.
alter table app.audit_events add column if not exists event_id uuid not null default gen_random_uuid();
create unique index if not exists audit_events_tenant_event_idx on app.audit_events (tenant_id, event_id);
-- Lists are ordered by (occurred_at, event_id) now, the handle breaking ties.
drop index if exists app.audit_events_tenant_occurred_idx;
create index audit_events_tenant_occurred_idx on app.audit_events (tenant_id, occurred_at, event_id);
comment on column app.audit_events.event_id is 'The event''s handle in the API (AuditEvent.id, cursors): random, so it tells nothing of other tenants'' events; not hashed (a handle, not content).';
