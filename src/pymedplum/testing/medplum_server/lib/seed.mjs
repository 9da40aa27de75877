// The seed the server starts with and returns to on reset. Ids and secrets are fixed, so a
// token issued before a reset stays valid after it and tests can name the seed's members.

const PROJECT_ID = '5eed0000-0000-4000-8000-000000000001';
const ADMIN_CLIENT_ID = '5eed0000-0000-4000-8000-0000000000a1';
const ADMIN_MEMBERSHIP_ID = '5eed0000-0000-4000-8000-0000000000a2';
const USER_CLIENT_ID = '5eed0000-0000-4000-8000-0000000000b1';
const USER_MEMBERSHIP_ID = '5eed0000-0000-4000-8000-0000000000b2';
const RESTRICTED_POLICY_ID = '5eed0000-0000-4000-8000-0000000000c1';

export const RESTRICTED_TAG = { system: 'http://example.org/sdk-test', code: 'restricted' };

const PRACTITIONERS = [
  {
    key: 'alice',
    given: 'Alice',
    family: 'Smith',
    practitioner: '5eed0000-0000-4000-8000-000000000101',
    user: '5eed0000-0000-4000-8000-000000000102',
    membership: '5eed0000-0000-4000-8000-000000000103',
  },
  {
    key: 'bob',
    given: 'Bob',
    family: 'Jones',
    practitioner: '5eed0000-0000-4000-8000-000000000201',
    user: '5eed0000-0000-4000-8000-000000000202',
    membership: '5eed0000-0000-4000-8000-000000000203',
  },
  {
    // As in the on-behalf-of cassette: may only see and write Patients tagged `restricted`.
    key: 'restricted',
    given: 'Restricted',
    family: 'Tester',
    practitioner: '5eed0000-0000-4000-8000-000000000301',
    user: '5eed0000-0000-4000-8000-000000000302',
    membership: '5eed0000-0000-4000-8000-000000000303',
    accessPolicy: RESTRICTED_POLICY_ID,
  },
];

const projectRef = { reference: `Project/${PROJECT_ID}`, display: 'pymedplum test project' };

/** The resources of the seed, in creation order. */
export function seedResources() {
  const resources = [
    {
      resourceType: 'Project',
      id: PROJECT_ID,
      name: 'pymedplum test project',
      // Bots run only in projects with this feature (execute.ts isBotEnabled), WebSocket
      // subscriptions with theirs (getwsbindingtoken.ts); not a super admin project, so $expunge
      // is refused until a test turns that on.
      features: ['bots', 'websocket-subscriptions'],
    },
    {
      resourceType: 'ClientApplication',
      id: ADMIN_CLIENT_ID,
      name: 'pymedplum admin client',
      secret: 'pymedplum-admin-secret-0a1b2c3d4e5f',
      status: 'active',
    },
    {
      resourceType: 'ProjectMembership',
      id: ADMIN_MEMBERSHIP_ID,
      project: projectRef,
      user: { reference: `ClientApplication/${ADMIN_CLIENT_ID}`, display: 'pymedplum admin client' },
      profile: { reference: `ClientApplication/${ADMIN_CLIENT_ID}`, display: 'pymedplum admin client' },
      admin: true,
    },
    {
      resourceType: 'ClientApplication',
      id: USER_CLIENT_ID,
      name: 'pymedplum non-admin client',
      secret: 'pymedplum-user-secret-6a7b8c9d0e1f',
      status: 'active',
    },
    {
      resourceType: 'ProjectMembership',
      id: USER_MEMBERSHIP_ID,
      project: projectRef,
      user: { reference: `ClientApplication/${USER_CLIENT_ID}`, display: 'pymedplum non-admin client' },
      profile: { reference: `ClientApplication/${USER_CLIENT_ID}`, display: 'pymedplum non-admin client' },
      admin: false,
    },
    {
      resourceType: 'AccessPolicy',
      id: RESTRICTED_POLICY_ID,
      name: 'Only Patients tagged restricted',
      resource: [
        {
          resourceType: 'Patient',
          criteria: `Patient?_tag=${RESTRICTED_TAG.system}|${RESTRICTED_TAG.code}`,
        },
      ],
    },
  ];
  for (const p of PRACTITIONERS) {
    const display = `${p.given} ${p.family}`;
    resources.push(
      {
        resourceType: 'Practitioner',
        id: p.practitioner,
        name: [{ given: [p.given], family: p.family }],
      },
      {
        resourceType: 'User',
        id: p.user,
        firstName: p.given,
        lastName: p.family,
        email: `${p.key}@example.com`,
        project: projectRef,
      },
      {
        resourceType: 'ProjectMembership',
        id: p.membership,
        project: projectRef,
        user: { reference: `User/${p.user}`, display },
        profile: { reference: `Practitioner/${p.practitioner}`, display },
        admin: false,
        ...(p.accessPolicy ? { accessPolicy: { reference: `AccessPolicy/${p.accessPolicy}` } } : {}),
      }
    );
  }
  resources.push(...terminologyResources());
  return resources.map((r) => ({
    ...r,
    meta: { project: PROJECT_ID, compartment: [{ reference: `Project/${PROJECT_ID}` }] },
  }));
}

const CODE_SYSTEM_ID = '5eed0000-0000-4000-8000-0000000000d1';
const VALUE_SET_ID = '5eed0000-0000-4000-8000-0000000000d2';
const CONCEPT_MAP_ID = '5eed0000-0000-4000-8000-0000000000d3';
const TERMINOLOGY = {
  code_system: { id: CODE_SYSTEM_ID, url: 'http://example.org/fhir/CodeSystem/sdk-test-colors' },
  value_set: { id: VALUE_SET_ID, url: 'http://example.org/fhir/ValueSet/sdk-test-warm-colors' },
  concept_map: { id: CONCEPT_MAP_ID, url: 'http://example.org/fhir/ConceptMap/sdk-test-colors-to-legacy' },
  target_system: 'http://example.org/fhir/CodeSystem/sdk-test-legacy-colors',
};

/** A tiny CodeSystem, a ValueSet over part of it and a ConceptMap, for terminology operations. */
function terminologyResources() {
  return [
    {
      resourceType: 'CodeSystem',
      id: CODE_SYSTEM_ID,
      url: TERMINOLOGY.code_system.url,
      name: 'SdkTestColors',
      title: 'SDK test colors',
      status: 'active',
      content: 'complete',
      property: [{ code: 'warm', description: 'Whether the color is warm', type: 'boolean' }],
      concept: [
        { code: 'red', display: 'Red', property: [{ code: 'warm', valueBoolean: true }] },
        { code: 'orange', display: 'Orange', property: [{ code: 'warm', valueBoolean: true }] },
        { code: 'blue', display: 'Blue', property: [{ code: 'warm', valueBoolean: false }] },
      ],
    },
    {
      resourceType: 'ValueSet',
      id: VALUE_SET_ID,
      url: TERMINOLOGY.value_set.url,
      name: 'SdkTestWarmColors',
      status: 'active',
      compose: { include: [{ system: TERMINOLOGY.code_system.url, concept: [{ code: 'red' }, { code: 'orange' }] }] },
    },
    {
      resourceType: 'ConceptMap',
      id: CONCEPT_MAP_ID,
      url: TERMINOLOGY.concept_map.url,
      name: 'SdkTestColorsToLegacy',
      status: 'active',
      group: [
        {
          source: TERMINOLOGY.code_system.url,
          target: TERMINOLOGY.target_system,
          element: [
            { code: 'red', target: [{ code: 'R', display: 'Legacy red', equivalence: 'equivalent' }] },
            { code: 'blue', target: [{ code: 'B', display: 'Legacy blue', equivalence: 'wider' }] },
          ],
        },
      ],
    },
  ];
}

/** What `GET /__test__/info` tells tests about the seed (base URLs are added by the server). */
export function seedInfo() {
  const practitioners = {};
  for (const p of PRACTITIONERS) {
    practitioners[p.key] = {
      name: `${p.given} ${p.family}`,
      practitioner: `Practitioner/${p.practitioner}`,
      membership: `ProjectMembership/${p.membership}`,
      user: `User/${p.user}`,
      access_policy: p.accessPolicy ? `AccessPolicy/${p.accessPolicy}` : null,
    };
  }
  const clients = seedResources().filter((r) => r.resourceType === 'ClientApplication');
  const secretOf = (id) => clients.find((c) => c.id === id).secret;
  return {
    project: `Project/${PROJECT_ID}`,
    project_id: PROJECT_ID,
    admin_client: {
      client_id: ADMIN_CLIENT_ID,
      client_secret: secretOf(ADMIN_CLIENT_ID),
      membership: `ProjectMembership/${ADMIN_MEMBERSHIP_ID}`,
      profile: `ClientApplication/${ADMIN_CLIENT_ID}`,
      admin: true,
    },
    user_client: {
      client_id: USER_CLIENT_ID,
      client_secret: secretOf(USER_CLIENT_ID),
      membership: `ProjectMembership/${USER_MEMBERSHIP_ID}`,
      profile: `ClientApplication/${USER_CLIENT_ID}`,
      admin: false,
    },
    practitioners,
    restricted_tag: RESTRICTED_TAG,
    terminology: TERMINOLOGY,
  };
}
