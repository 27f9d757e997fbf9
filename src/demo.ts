// Demo data for a first run: two tenants, one user per role in each, a few
// agents, and a platform operator. Created only when the database has no tenant at all.
import type { Sql } from './db/pool.ts';
import { addMember, createTenant, createUser, setOperator } from './operator/repo.ts';
import { ROLES, type Role } from './tenancy/roles.ts';

const DEMO = [
  {
    slug: 'acme',
    name: 'Acme Robotics',
    agents: [
      { name: 'Support triage', kind: 'assistant', description: 'Sorts incoming support tickets' },
      { name: 'Release notes', kind: 'writer', description: 'Drafts release notes from merged changes' },
      { name: 'Code reviewer', kind: 'coder', description: 'Reviews pull requests for style and bugs' },
    ],
  },
  {
    slug: 'globex',
    name: 'Globex Research',
    agents: [
      { name: 'Literature scout', kind: 'researcher', description: 'Finds and summarises new papers' },
      { name: 'Lab notebook', kind: 'assistant', description: 'Keeps experiment notes tidy' },
    ],
  },
] as const;

export type DemoPrincipal = { tenantSlug: string; tenantId: string; role: Role; userId: string; email: string };

const demoEmail = (slug: string, role: Role) => `${role.toLowerCase()}@${slug}.example`;
const DEMO_OPERATOR = 'operator@platform.example';

/** Seeds the demo when the database is empty; true when it did. */
export async function seedDemo(owner: Sql): Promise<boolean> {
  return owner.begin(async (tx) => {
    // One seeder at a time; a second process finds tenants and stops.
    await tx`lock table app.tenants in exclusive mode`;
    const [any] = await tx`select 1 from app.tenants limit 1`;
    if (any) return false;
    for (const demo of DEMO) {
      const tenant = await createTenant(tx, demo.slug, demo.name, 'team');
      const users: Partial<Record<Role, string>> = {};
      for (const role of ROLES) {
        const label = role.charAt(0) + role.slice(1).toLowerCase();
        const user = await createUser(tx, demoEmail(demo.slug, role), `${demo.name} ${label}`);
        await addMember(tx, tenant.id, user.id, role);
        users[role] = user.id;
      }
      for (const agent of demo.agents) {
        await tx`
          insert into app.agents (tenant_id, name, kind, description, created_by)
          values (${tenant.id}, ${agent.name}, ${agent.kind}, ${agent.description}, ${users.MEMBER!})`;
      }
    }
    const operator = await createUser(tx, DEMO_OPERATOR, 'Platform Operator');
    await setOperator(tx, operator, true, 'demo', 'demo data');
    return true;
  });
}

/** The demo's platform operator, when it still is one. */
export async function demoOperator(owner: Sql): Promise<{ userId: string; email: string } | undefined> {
  const [row] = await owner<{ userId: string; email: string }[]>`
    select u.id as "userId", u.email from app.users u join app_private.operators o on o.user_id = u.id
    where u.email = ${DEMO_OPERATOR}`;
  return row;
}

/** The demo users that still exist, one per tenant and role. */
export async function demoPrincipals(owner: Sql): Promise<DemoPrincipal[]> {
  const emails = DEMO.flatMap((demo) => ROLES.map((role) => demoEmail(demo.slug, role)));
  return owner<DemoPrincipal[]>`
    select t.slug as "tenantSlug", t.id as "tenantId", m.role, u.id as "userId", u.email
    from app.memberships m
    join app.users u on u.id = m.user_id
    join app.tenants t on t.id = m.tenant_id
    where u.email = any(${owner.array(emails)})
    order by t.slug, app.role_rank(m.role) desc`;
}
