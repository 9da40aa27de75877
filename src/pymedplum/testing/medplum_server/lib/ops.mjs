// What the Medplum server serves beyond the FhirRouter's interactions: raw Binary content and
// presigned storage URLs, bulk $export and async job polling, Bots ($deploy, $execute),
// $everything, $expunge, $set-accounts, $ccda-export, terminology operations and the admin
// invite endpoint. Each handler follows Medplum's server source (packages/server/src/fhir/...);
// README.md lists where this server still differs.
import crypto from 'node:crypto';
import vm from 'node:vm';
import zlib from 'node:zlib';
import {
  OperationOutcomeError,
  accepted,
  allOk,
  badRequest,
  createReference,
  created,
  forbidden,
  getStatus,
  isOperationOutcome,
  normalizeErrorString,
  normalizeOperationOutcome,
  notFound,
} from '@medplum/core';

const FHIR_JSON_TYPE = 'application/fhir+json';
const NDJSON = 'application/fhir+ndjson';
const CDA_XML = 'application/cda+xml';
const JAVASCRIPT = 'text/javascript';
const EXECUTE_CONTENT_TYPES = ['application/json', FHIR_JSON_TYPE, 'text/plain', 'x-application/hl7-v2+er7'];
// Types a system export leaves out: Medplum's list (export.ts unexportedResourceTypes and
// core's protectedResourceTypes), plus the administrative types that carry credentials.
const NOT_EXPORTED = new Set([
  'AsyncJob', 'AuditEvent', 'Binary', 'BulkDataExport', 'CodeSystem', 'DomainConfiguration',
  'Enterprise', 'JsonWebKey', 'Login', 'SearchParameter', 'StructureDefinition', 'ValueSet',
  'ClientApplication', 'Project', 'ProjectMembership', 'User', 'UserConfiguration',
]);
const PRESIGNED_SECONDS = 3600;
const BOT_TIMEOUT_MS = 10_000;

/**
 * Express (mime 1.x) adds `charset=utf-8` to text types and JSON when a type is set, and
 * `res.send` adds it to every string body; this reproduces the first rule.
 */
export function expressContentType(type) {
  const base = String(type ?? 'application/octet-stream');
  if (/;\s*charset=/i.test(base)) {
    return base;
  }
  return /^text\/|^application\/(javascript|json)(;|$)/i.test(base) ? `${base}; charset=utf-8` : base;
}

function withCharset(type) {
  return /;\s*charset=/i.test(type) ? type : `${type}; charset=utf-8`;
}

/** The value of a named input parameter from a Parameters body or a query/form dict. */
function paramValues(input, name) {
  if (!input) {
    return [];
  }
  if (input.resourceType === 'Parameters') {
    const out = [];
    for (const p of input.parameter ?? []) {
      if (p.name !== name) {
        continue;
      }
      if (p.resource) {
        out.push(p.resource);
        continue;
      }
      const key = Object.keys(p).find((k) => k.startsWith('value'));
      if (key) {
        out.push(p[key]);
      }
    }
    return out;
  }
  const value = input[name];
  if (value === undefined) {
    return [];
  }
  return Array.isArray(value) ? value : [value];
}

function param(input, name) {
  return paramValues(input, name)[0];
}

function truthy(value) {
  return value === true || value === 'true';
}

/** Every `Type/id` reference string anywhere in a resource. */
function references(value, out = new Set()) {
  if (Array.isArray(value)) {
    for (const v of value) {
      references(v, out);
    }
  } else if (value && typeof value === 'object') {
    if (typeof value.reference === 'string') {
      out.add(value.reference);
    }
    for (const [k, v] of Object.entries(value)) {
      if (k !== 'meta') {
        references(v, out);
      }
    }
  }
  return out;
}

export function createOps(env) {
  const { state, FHIR_PREFIX, outcomeResponse, jsonResponse, fullUrl, rateLimitHeaders } = env;

  const fhirBase = () => `${state.baseUrl}${FHIR_PREFIX}/`;

  function reset() {
    state.binaryData = new Map(); // `${id}/${versionId}` -> Buffer
    state.jobs = new Map(); // AsyncJob/BulkDataExport id -> pending job
    state.jobSettings = { polls: 1, afterMs: 0 };
    // Where presigned URLs point (`null`: the API's own origin, Medplum's default
    // `storageBaseUrl`), and what export manifests say in `requiresAccessToken`.
    state.storageOrigin = null;
    state.exportRequiresAccessToken = false;
  }
  reset();

  // ---- small response helpers ---------------------------------------------------------------

  function resourceHeaders(resource, outcome) {
    const headers = { 'Content-Type': env.FHIR_JSON, ...rateLimitHeaders() };
    if (resource.meta?.versionId) {
      headers.ETag = `W/"${resource.meta.versionId}"`;
    }
    if (resource.meta?.lastUpdated) {
      headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    }
    if (outcome && getStatus(outcome) === 201 && resource.id) {
      headers.Location = fullUrl(resource);
    }
    return headers;
  }

  function resourceResponse(outcome, resource) {
    return { status: getStatus(outcome), headers: resourceHeaders(resource, outcome), body: JSON.stringify(resource) };
  }

  function outcome(o, extra = {}) {
    return outcomeResponse(o, { ...rateLimitHeaders(), ...extra });
  }

  function acceptedResponse(url) {
    return outcome(accepted(url), { 'Content-Location': url });
  }

  function emptyAccepted() {
    return { status: 202, headers: { ...rateLimitHeaders() }, body: '' };
  }

  // ---- binary storage and presigned URLs -----------------------------------------------------

  function sign(path, expires) {
    return crypto.createHmac('sha256', state.tokenSecret).update(`${path}?Expires=${expires}`).digest('base64');
  }

  function presignedUrl(binary) {
    const path = `${binary.id}/${binary.meta?.versionId}`;
    const expires = Math.floor(Date.now() / 1000) + PRESIGNED_SECONDS;
    return `${state.storageOrigin ?? state.baseUrl}/storage/${path}?Expires=${expires}&Signature=${encodeURIComponent(sign(path, expires))}`;
  }

  function storeBytes(binary, bytes) {
    state.binaryData.set(`${binary.id}/${binary.meta?.versionId}`, bytes);
  }

  function bytesOf(binary) {
    if (binary.data !== undefined) {
      return Buffer.from(binary.data, 'base64');
    }
    return state.binaryData.get(`${binary.id}/${binary.meta?.versionId}`) ?? Buffer.alloc(0);
  }

  /** `GET /storage/{id}/{versionId}?Expires&Signature`: the presigned download (no bearer). */
  function handleStorage(req, url) {
    const match = /^\/storage\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (!match || req.method !== 'GET') {
      return outcomeResponse(notFound);
    }
    const path = `${match[1]}/${match[2]}`;
    const expires = Number(url.searchParams.get('Expires'));
    const signature = url.searchParams.get('Signature') ?? '';
    const expected = sign(path, expires);
    const valid =
      Number.isFinite(expires) &&
      expires * 1000 > Date.now() &&
      signature.length === expected.length &&
      crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(expected));
    if (!valid) {
      return { status: 403, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: 'Forbidden' };
    }
    const versions = state.repo.history.get('Binary')?.get(match[1]) ?? [];
    const binary = versions.find((v) => v.meta?.versionId === match[2]);
    if (!binary || binary.__deleted) {
      return outcomeResponse(notFound);
    }
    return { status: 200, headers: { 'Content-Type': binary.contentType ?? 'application/octet-stream' }, body: bytesOf(binary) };
  }

  // ---- Binary ------------------------------------------------------------------------------------

  function decodeContent(req, body) {
    const encoding = (req.headers['content-encoding'] ?? '').toLowerCase();
    if (!encoding || encoding === 'identity') {
      return body;
    }
    if (encoding === 'gzip') {
      return zlib.gunzipSync(body);
    }
    if (encoding === 'deflate') {
      return zlib.inflateSync(body);
    }
    return undefined;
  }

  async function binaryWrite(r, id) {
    const { req, repo } = r;
    const create = r.method === 'POST';
    const contentType = req.headers['content-type'];
    const content = decodeContent(req, r.body);
    if (!content) {
      return outcome(badRequest('Unsupported content encoding'));
    }
    // FHIR R4 binary.html#rest: the body is the content, unless it is itself this Binary.
    let binary;
    let special = false;
    if (contentType === FHIR_JSON_TYPE) {
      try {
        const parsed = JSON.parse(content.toString('utf8'));
        if (parsed?.resourceType === 'Binary' && parsed.id === id) {
          binary = parsed;
          special = true;
        }
      } catch {
        // not JSON: stored as content
      }
    }
    if (!binary) {
      const securityContext = req.headers['x-security-context'];
      binary = { resourceType: 'Binary', id: id ?? '', contentType };
      if (securityContext) {
        binary.securityContext = { reference: securityContext };
      }
    }
    const stored = create
      ? await repo.createResource(binary, { keepIdPosition: true })
      : await repo.updateResource(binary);
    if (!special) {
      storeBytes(stored, content);
    }
    return resourceResponse(create ? created : allOk, { ...stored, url: presignedUrl(stored) });
  }

  async function binaryRead(r, id) {
    const binary = await r.repo.readResource('Binary', id);
    const accept = r.req.headers.accept;
    if (accept?.startsWith(FHIR_JSON_TYPE)) {
      return resourceResponse(allOk, binary);
    }
    // Any other Accept: the content itself, with the Binary's own content type.
    const headers = resourceHeaders(binary);
    headers['Content-Type'] = expressContentType(binary.contentType);
    return { status: 200, headers, body: bytesOf(binary) };
  }

  // ---- async jobs ------------------------------------------------------------------------------

  function registerJob(resource, complete) {
    const job = {
      id: resource.id,
      resourceType: resource.resourceType,
      pollsLeft: state.jobSettings.polls,
      readyAt: Date.now() + state.jobSettings.afterMs,
      complete,
      done: false,
    };
    state.jobs.set(resource.id, job);
    return job;
  }

  async function finishJob(job) {
    if (!job.done) {
      job.done = true;
      await job.complete();
    }
  }

  /** True once the job may report completion (polls answered and time passed), completing it. */
  async function pollJob(id) {
    const job = state.jobs.get(id);
    if (!job || job.done) {
      return true;
    }
    if (job.pollsLeft > 0 || Date.now() < job.readyAt) {
      job.pollsLeft = Math.max(0, job.pollsLeft - 1);
      return false;
    }
    await finishJob(job);
    return true;
  }

  async function completeAllJobs() {
    for (const job of state.jobs.values()) {
      await finishJob(job);
    }
  }

  function listJobs() {
    return [...state.jobs.values()].map((j) => ({
      id: j.id,
      resource_type: j.resourceType,
      status: state.repo.rawGet(j.resourceType, j.id)?.status ?? null,
      polls_left: j.pollsLeft,
      done: j.done,
    }));
  }

  /** Medplum's sendAsyncResponse: an AsyncJob, the work, 202 with the job's status URL. */
  async function startAsyncJob(r, work) {
    const job = await state.repo.createResource({
      resourceType: 'AsyncJob',
      status: 'accepted',
      request: `${state.baseUrl}${r.url.pathname}${r.url.search}`,
      requestTime: new Date().toISOString(),
      meta: { project: r.projectId },
    });
    // The work runs now (as Medplum starts it at once); only its completion waits for polls.
    let result;
    try {
      result = { output: await work() };
    } catch (err) {
      result = { error: normalizeOperationOutcome(err) };
    }
    registerJob(job, async () => {
      const current = state.repo.rawGet('AsyncJob', job.id);
      const next = { ...current, transactionTime: new Date().toISOString() };
      if (result.error) {
        next.status = 'error';
        next.output = { resourceType: 'Parameters', parameter: [{ name: 'outcome', resource: result.error }] };
      } else {
        next.status = 'completed';
        if (result.output) {
          next.output = result.output;
        }
      }
      await state.repo.updateResource(next);
    });
    return acceptedResponse(`${fhirBase()}job/${job.id}/status`);
  }

  async function jobStatus(r, id) {
    if (r.method === 'DELETE') {
      return emptyAccepted();
    }
    await r.repo.readResource('AsyncJob', id);
    if (!(await pollJob(id))) {
      return emptyAccepted();
    }
    const job = await r.repo.readResource('AsyncJob', id);
    if (!['completed', 'error'].includes(job.status)) {
      return emptyAccepted();
    }
    return resourceResponse(allOk, job);
  }

  // ---- bulk export -------------------------------------------------------------------------------

  function visible(repo, resource) {
    try {
      repo.checkType(resource.resourceType, false);
    } catch {
      return false;
    }
    return repo.policyAdmits(resource, false);
  }

  function allResources(types) {
    const out = [];
    for (const [type, byId] of state.repo.resources) {
      if (types && !types.includes(type)) {
        continue;
      }
      for (const resource of byId.values()) {
        out.push(resource);
      }
    }
    return out;
  }

  function compartmentOf(patientRefs, types) {
    return allResources(types).filter(
      (r) => patientRefs.has(`${r.resourceType}/${r.id}`) || [...references(r)].some((ref) => patientRefs.has(ref))
    );
  }

  async function exportKickoff(r, level, groupId) {
    const input = r.method === 'POST' ? r.fhirBody : r.query;
    const typeParam = paramValues(input, '_type').join(',');
    const types = typeParam ? typeParam.split(',').map((t) => t.trim()).filter(Boolean) : undefined;
    const since = param(input, '_since');
    let candidates;
    if (level === 'system') {
      candidates = allResources(types).filter((res) => !NOT_EXPORTED.has(res.resourceType));
    } else {
      let patients;
      if (level === 'group') {
        const group = await r.repo.readResource('Group', groupId);
        patients = new Set(
          (group.member ?? []).map((m) => m.entity?.reference).filter((ref) => ref?.startsWith('Patient/'))
        );
      } else {
        patients = new Set(allResources(['Patient']).map((p) => `Patient/${p.id}`));
      }
      candidates = compartmentOf(patients, types).filter((res) => !NOT_EXPORTED.has(res.resourceType));
    }
    const byType = new Map();
    for (const resource of candidates) {
      if (!visible(r.repo, resource)) {
        continue;
      }
      if (since && (resource.meta?.lastUpdated ?? '') < since) {
        continue;
      }
      const lines = byType.get(resource.resourceType) ?? [];
      lines.push(JSON.stringify(r.repo.present(resource)));
      byType.set(resource.resourceType, lines);
    }
    const routePath = r.path.replace(/^\//, '');
    const exportResource = await state.repo.createResource({
      resourceType: 'BulkDataExport',
      status: 'active',
      request: `${state.baseUrl}${FHIR_PREFIX}${routePath}`,
      requestTime: new Date().toISOString(),
      meta: { project: r.projectId },
    });
    const output = [];
    for (const [type, lines] of byType) {
      const binary = await state.repo.createResource({
        resourceType: 'Binary',
        contentType: NDJSON,
        meta: { project: r.projectId },
      });
      storeBytes(binary, Buffer.from(lines.map((l) => `${l}\n`).join('')));
      output.push({ type, url: `Binary/${binary.id}` });
    }
    registerJob(exportResource, async () => {
      const current = state.repo.rawGet('BulkDataExport', exportResource.id);
      if (current.status === 'cancelled') {
        return;
      }
      await state.repo.updateResource({
        ...current,
        status: 'completed',
        transactionTime: new Date().toISOString(),
        ...(output.length ? { output } : {}),
      });
    });
    return acceptedResponse(`${fhirBase()}bulkdata/export/${exportResource.id}`);
  }

  async function readExport(repo, id) {
    try {
      return await repo.readResource('AsyncJob', id);
    } catch (err) {
      if (getStatus(normalizeOperationOutcome(err)) !== 404) {
        throw err;
      }
      return repo.readResource('BulkDataExport', id);
    }
  }

  async function exportStatus(r, id) {
    let resource = await readExport(r.repo, id);
    if (r.method === 'DELETE') {
      if (resource.status !== 'cancelled') {
        await state.repo.updateResource({ ...state.repo.rawGet(resource.resourceType, id), status: 'cancelled' });
      }
      return emptyAccepted();
    }
    if (resource.status === 'cancelled') {
      return outcome(notFound);
    }
    if (resource.status !== 'completed') {
      if (!(await pollJob(id))) {
        return emptyAccepted();
      }
      resource = await readExport(r.repo, id);
      if (resource.status !== 'completed') {
        return emptyAccepted();
      }
    }
    const presign = (entries) =>
      (entries ?? []).map((e) => {
        const binary = e.url?.startsWith('Binary/') ? state.repo.rawGet('Binary', e.url.slice(7)) : undefined;
        return { type: e.type, url: binary ? presignedUrl(binary) : e.url };
      });
    let outputs = resource.output;
    if (resource.resourceType === 'AsyncJob') {
      outputs = (resource.output?.parameter ?? [])
        .filter((p) => p.name === 'output')
        .map((p) => ({
          type: p.part?.find((x) => x.name === 'type')?.valueCode,
          url: p.part?.find((x) => x.name === 'url')?.valueUri,
        }));
    }
    return jsonResponse(
      200,
      {
        transactionTime: resource.transactionTime,
        request: resource.request,
        requiresAccessToken: state.exportRequiresAccessToken,
        output: presign(outputs),
        error: presign(resource.error),
        deleted: presign(resource.deleted),
      },
      env.JSON_TYPE,
      rateLimitHeaders()
    );
  }

  // ---- Bots -------------------------------------------------------------------------------------

  function project(r) {
    return state.repo.rawGet('Project', r.projectId) ?? {};
  }

  async function deployBot(r, id) {
    const body = r.fhirBody ?? {};
    const code = body.code;
    if (!code) {
      return outcome(badRequest('Missing code'));
    }
    await r.repo.readResource('Bot', id);
    if (!project(r).features?.includes('bots')) {
      return outcome(badRequest('Bots not enabled'));
    }
    const filename = body.filename ?? 'index.js';
    const binary = await r.repo.createResource({ resourceType: 'Binary', contentType: JAVASCRIPT });
    storeBytes(binary, Buffer.from(String(code), 'utf8'));
    const bot = state.repo.rawGet('Bot', id);
    await r.repo.updateResource({
      ...bot,
      executableCode: { contentType: JAVASCRIPT, url: `Binary/${binary.id}`, title: filename },
    });
    return outcome(allOk);
  }

  function botInput(r) {
    if (r.method !== 'POST') {
      return Object.fromEntries(Object.entries(r.query).map(([k, v]) => [k, v.length === 1 ? v[0] : v]));
    }
    const type = r.mediaType;
    const text = r.body.toString('utf8');
    if (type === 'application/json' || type === FHIR_JSON_TYPE || type.endsWith('+json')) {
      if (!text) {
        return {};
      }
      try {
        return JSON.parse(text);
      } catch {
        throw new OperationOutcomeError(badRequest('Content could not be parsed'));
      }
    }
    if (type === 'application/x-www-form-urlencoded') {
      return Object.fromEntries(new URLSearchParams(text));
    }
    return text;
  }

  /** A small stand-in for the MedplumClient a bot receives, acting through this request's repo. */
  function botClient(repo) {
    const search = async (resourceType, query) => {
      const params = new URLSearchParams(typeof query === 'string' ? query : (query ?? {}));
      const { parseSearchRequest } = env.core;
      const searchRequest = parseSearchRequest(resourceType, Object.fromEntries(params));
      return repo.search(searchRequest);
    };
    return {
      createResource: (resource) => repo.createResource(resource),
      readResource: (type, id) => repo.readResource(type, id),
      updateResource: (resource) => repo.updateResource(resource),
      deleteResource: (type, id) => repo.deleteResource(type, id),
      search,
      searchResources: async (type, query) => ((await search(type, query)).entry ?? []).map((e) => e.resource),
      searchOne: async (type, query) => (await search(type, query)).entry?.[0]?.resource,
    };
  }

  async function runBot(r, bot, input, contentType) {
    if (!project(r).features?.includes('bots')) {
      return { success: false, logResult: 'Bots not enabled' };
    }
    // Real Medplum runs `awslambda` bots on AWS Lambda; here both runtimes run in node:vm.
    if (bot.runtimeVersion !== 'vmcontext' && bot.runtimeVersion !== 'awslambda') {
      return { success: false, logResult: 'Unsupported bot runtime' };
    }
    const codeUrl = bot.executableCode?.url;
    if (!codeUrl) {
      return { success: false, logResult: 'No executable code' };
    }
    if (!codeUrl.startsWith('Binary/')) {
      return { success: false, logResult: 'Executable code is not a Binary' };
    }
    const binary = state.repo.rawGet('Binary', codeUrl.slice('Binary/'.length));
    const code = binary ? bytesOf(binary).toString('utf8') : '';
    const logs = [];
    const log = (...args) => logs.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
    const sandbox = {
      console: { log, info: log, warn: log, error: log, debug: log },
      medplum: botClient(r.repo),
      event: { bot: createReference(bot), baseUrl: `${state.baseUrl}/`, input, contentType, secrets: {} },
    };
    const wrapped = `
      const exports = {};
      const module = { exports };
      ${code}
      (async () => {
        const handler = module.exports.handler ?? exports.handler;
        const { bot, input, contentType, secrets } = event;
        return handler(medplum, { bot, input, contentType, secrets });
      })();`;
    try {
      const promise = vm.runInNewContext(wrapped, sandbox, { timeout: BOT_TIMEOUT_MS });
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('Bot timed out')), BOT_TIMEOUT_MS);
      });
      const returnValue = await Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
      return { success: true, logResult: logs.join('\n'), returnValue };
    } catch (err) {
      logs.push(`Error ${normalizeErrorString(err)}`);
      return { success: false, logResult: logs.join('\n') };
    }
  }

  function botResponseBody(result) {
    if (result.returnValue === undefined) {
      return result.success ? allOk : badRequest(result.logResult);
    }
    return typeof result.returnValue === 'number' ? String(result.returnValue) : result.returnValue;
  }

  async function executeBot(r, id) {
    let bot;
    if (id) {
      bot = await r.repo.readResource('Bot', id);
    } else {
      const identifier = r.query.identifier?.[0];
      if (identifier) {
        const { parseSearchRequest } = env.core;
        const bundle = await r.repo.search(parseSearchRequest('Bot', { identifier, _count: '1' }));
        bot = bundle.entry?.[0]?.resource;
      }
      if (!bot) {
        return outcome(badRequest('Must specify bot ID or identifier.'));
      }
    }
    bot = state.repo.rawGet('Bot', bot.id);
    const input = botInput(r);
    const contentType = r.req.headers['content-type'];
    if (r.req.headers.prefer === 'respond-async') {
      return startAsyncJob(r, async () => {
        const result = await runBot(r, bot, input, contentType);
        const body = botResponseBody(result);
        if (isOperationOutcome(body) && getStatus(body) >= 400) {
          throw new OperationOutcomeError(body);
        }
        if (typeof body === 'string') {
          return { resourceType: 'Parameters', parameter: [{ name: 'responseBody', valueString: body }] };
        }
        if (typeof body === 'boolean') {
          return { resourceType: 'Parameters', parameter: [{ name: 'responseBody', valueBoolean: body }] };
        }
        if (isOperationOutcome(body)) {
          return { resourceType: 'Parameters', parameter: [{ name: 'outcome', resource: body }] };
        }
        return { resourceType: 'Parameters', parameter: [{ name: 'responseBody', valueString: JSON.stringify(body) }] };
      });
    }
    const result = await runBot(r, bot, input, contentType);
    const body = botResponseBody(result);
    const status = result.success ? 200 : 400;
    if (body && typeof body === 'object' && body.resourceType === 'Binary') {
      return binaryResponse(body, status);
    }
    const requested = r.mediaType;
    const type = EXECUTE_CONTENT_TYPES.includes(requested) ? requested : 'application/json';
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return { status, headers: { 'Content-Type': withCharset(type), ...rateLimitHeaders() }, body: text };
  }

  function binaryResponse(binary, status = 200) {
    return {
      status,
      headers: { 'Content-Type': expressContentType(binary.contentType), ...rateLimitHeaders() },
      body: bytesOf(binary),
    };
  }

  // ---- patient operations ------------------------------------------------------------------------

  async function everything(r, id) {
    const patient = await r.repo.readResource('Patient', id);
    const ref = `Patient/${id}`;
    const others = compartmentOf(new Set([ref]))
      .filter((res) => !(res.resourceType === 'Patient' && res.id === id))
      .filter((res) => visible(r.repo, res))
      .map((res) => r.repo.present(res));
    const all = [patient, ...others];
    const input = r.method === 'POST' ? r.fhirBody : r.query;
    const count = Number.parseInt(param(input, '_count') ?? '', 10);
    const offset = Number.parseInt(param(input, '_offset') ?? '0', 10) || 0;
    const page = Number.isNaN(count) ? all.slice(offset) : all.slice(offset, offset + count);
    const selfUrl = `${fhirBase()}Patient/${id}/$everything`;
    const link = [];
    if (!Number.isNaN(count)) {
      link.push({ relation: 'self', url: `${selfUrl}?_count=${count}${offset ? `&_offset=${offset}` : ''}` });
      if (offset + count < all.length) {
        link.push({ relation: 'next', url: `${selfUrl}?_count=${count}&_offset=${offset + count}` });
      }
    }
    const bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      ...(page.length
        ? { entry: page.map((res) => ({ fullUrl: fullUrl(res), search: { mode: 'match' }, resource: res })) }
        : {}),
      ...(link.length ? { link } : {}),
    };
    return resourceResponse(allOk, bundle);
  }

  async function ccdaExport(r, id) {
    const patient = await r.repo.readResource('Patient', id);
    const name = patient.name?.[0] ?? {};
    const esc = (s) => String(s ?? '').replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
    const xml =
      '<?xml version="1.0" encoding="UTF-8"?>' +
      '<ClinicalDocument xmlns="urn:hl7-org:v3">' +
      '<templateId root="2.16.840.1.113883.10.20.22.1.1" extension="2015-08-01"/>' +
      `<id root="${crypto.randomUUID()}"/>` +
      '<code code="34133-9" codeSystem="2.16.840.1.113883.6.1" displayName="Summarization of Episode Note"/>' +
      '<title>Medical Summary</title>' +
      `<effectiveTime value="${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}"/>` +
      '<recordTarget><patientRole>' +
      `<id root="2.16.840.1.113883.19.5" extension="${esc(patient.id)}"/>` +
      '<patient><name>' +
      (name.given ?? []).map((g) => `<given>${esc(g)}</given>`).join('') +
      (name.family ? `<family>${esc(name.family)}</family>` : '') +
      '</name>' +
      (patient.gender ? `<administrativeGenderCode code="${esc(patient.gender[0].toUpperCase())}"/>` : '') +
      (patient.birthDate ? `<birthTime value="${esc(patient.birthDate.replaceAll('-', ''))}"/>` : '') +
      '</patient></patientRole></recordTarget>' +
      '<component><structuredBody/></component>' +
      '</ClinicalDocument>';
    return binaryResponse({ contentType: CDA_XML, data: Buffer.from(xml).toString('base64') });
  }

  // ---- $expunge and $set-accounts --------------------------------------------------------------

  function expungeOne(type, id) {
    state.repo.resources.get(type)?.delete(id);
    state.repo.history.get(type)?.delete(id);
    state.repo.deleted.delete(`${type}/${id}`);
  }

  async function expunge(r, type, id) {
    if (!project(r).superAdmin) {
      return outcome(forbidden);
    }
    if (r.query.everything?.[0] === 'true') {
      return startAsyncJob(r, async () => {
        const ref = `${type}/${id}`;
        for (const res of compartmentOf(new Set([ref]))) {
          if (res.resourceType !== 'Binary') {
            expungeOne(res.resourceType, res.id);
          }
        }
        expungeOne(type, id);
      });
    }
    expungeOne(type, id);
    return outcome(allOk);
  }

  async function setAccountsOn(resource, accounts) {
    const current = state.repo.rawGet(resource.resourceType, resource.id);
    const meta = { ...current.meta };
    if (accounts.length) {
      meta.accounts = accounts;
    } else {
      delete meta.accounts;
    }
    const compartment = (meta.compartment ?? []).filter((c) => c.reference?.startsWith('Project/'));
    meta.compartment = [...compartment, ...accounts.map((a) => ({ reference: a.reference }))];
    await state.repo.updateResource({ ...current, meta });
  }

  async function setAccounts(r, type, id) {
    if (!r.admin) {
      return outcome(forbidden);
    }
    const input = r.method === 'POST' ? r.fhirBody : r.query;
    const accounts = paramValues(input, 'accounts').map((a) => (typeof a === 'string' ? { reference: a } : a));
    const propagate = truthy(param(input, 'propagate'));
    const target = await r.repo.readResource(type, id);
    const work = async () => {
      let count = 0;
      await setAccountsOn(target, accounts);
      count++;
      if (propagate) {
        for (const res of compartmentOf(new Set([`${type}/${id}`]))) {
          if (res.resourceType === type && res.id === id) {
            continue;
          }
          await setAccountsOn(res, accounts);
          count++;
        }
      }
      return { resourceType: 'Parameters', parameter: [{ name: 'resourcesUpdated', valueInteger: count }] };
    };
    if (r.req.headers.prefer === 'respond-async') {
      return startAsyncJob(r, work);
    }
    return resourceResponse(allOk, await work());
  }

  // ---- terminology -------------------------------------------------------------------------------

  function findByUrl(resourceType, url) {
    for (const res of state.repo.resources.get(resourceType)?.values() ?? []) {
      if (res.url === url) {
        return res;
      }
    }
    throw new OperationOutcomeError(notFound);
  }

  function flatConcepts(concepts, out = []) {
    for (const c of concepts ?? []) {
      out.push(c);
      flatConcepts(c.concept, out);
    }
    return out;
  }

  /** Every coding a ValueSet includes (compose.include by system/concept/filter, minus exclude). */
  function valueSetCodings(valueSet) {
    if (valueSet.expansion?.contains && !valueSet.compose) {
      return valueSet.expansion.contains.map((c) => ({ system: c.system, code: c.code, display: c.display }));
    }
    const fromInclude = (include) => {
      if (include.concept?.length) {
        return include.concept.map((c) => {
          let display = c.display;
          if (!display) {
            try {
              display = flatConcepts(findByUrl('CodeSystem', include.system).concept).find((x) => x.code === c.code)
                ?.display;
            } catch {
              // an unknown system: no display
            }
          }
          return { system: include.system, code: c.code, ...(display ? { display } : {}) };
        });
      }
      if (include.system) {
        const cs = findByUrl('CodeSystem', include.system);
        return flatConcepts(cs.concept).map((c) => ({ system: include.system, code: c.code, display: c.display }));
      }
      return [];
    };
    const excluded = new Set((valueSet.compose?.exclude ?? []).flatMap(fromInclude).map((c) => `${c.system}|${c.code}`));
    return (valueSet.compose?.include ?? []).flatMap(fromInclude).filter((c) => !excluded.has(`${c.system}|${c.code}`));
  }

  async function terminologyResource(r, resourceType, id, url) {
    if (id) {
      return r.repo.readResource(resourceType, id);
    }
    if (!url) {
      throw new OperationOutcomeError(badRequest(`No ${resourceType === 'CodeSystem' ? 'code system' : resourceType} specified`));
    }
    return findByUrl(resourceType, url);
  }

  function opInput(r) {
    return r.method === 'POST' ? r.fhirBody : Object.fromEntries(Object.entries(r.query).map(([k, v]) => [k, v.length > 1 ? v : v[0]]));
  }

  function parameters(list) {
    return { resourceType: 'Parameters', parameter: list };
  }

  async function expand(r, id) {
    const input = opInput(r);
    const valueSet = await terminologyResource(r, 'ValueSet', id, param(input, 'url'));
    const filter = String(param(input, 'filter') ?? '').toLowerCase();
    let codings = valueSetCodings(valueSet);
    if (filter) {
      codings = codings.filter((c) => `${c.display ?? ''} ${c.code}`.toLowerCase().includes(filter));
    }
    const offset = Number(param(input, 'offset') ?? 0) || 0;
    const countParam = param(input, 'count');
    const count = countParam === undefined ? codings.length : Number(countParam);
    const { expansion: _old, ...rest } = valueSet;
    const result = {
      ...rest,
      expansion: {
        timestamp: new Date().toISOString(),
        total: codings.length,
        offset,
        contains: codings.slice(offset, offset + count),
      },
    };
    return resourceResponse(allOk, result);
  }

  async function lookup(r, id) {
    const input = opInput(r);
    const coding = param(input, 'coding');
    const system = param(input, 'system') ?? coding?.system;
    const codeSystem = await terminologyResource(r, 'CodeSystem', id, system);
    const code = coding?.code ?? param(input, 'code');
    if (!code) {
      return outcome(badRequest('No coding specified'));
    }
    if (system && system !== codeSystem.url) {
      return outcome(notFound);
    }
    const concept = flatConcepts(codeSystem.concept).find((c) => c.code === code);
    if (!concept) {
      return outcome(notFound);
    }
    const out = [
      { name: 'name', valueString: codeSystem.title ?? codeSystem.name ?? codeSystem.url },
      { name: 'display', valueString: concept.display ?? '' },
    ];
    for (const p of concept.property ?? []) {
      const valueKey = Object.keys(p).find((k) => k.startsWith('value'));
      const description = codeSystem.property?.find((d) => d.code === p.code)?.description;
      out.push({
        name: 'property',
        part: [
          { name: 'code', valueCode: p.code },
          { name: 'value', [valueKey]: p[valueKey] },
          ...(description ? [{ name: 'description', valueString: description }] : []),
        ],
      });
    }
    return resourceResponse(allOk, parameters(out));
  }

  function codingsOf(input) {
    const codeableConcept = param(input, 'codeableConcept');
    if (codeableConcept) {
      return codeableConcept.coding ?? [];
    }
    const coding = param(input, 'coding');
    if (coding) {
      return [coding];
    }
    const code = param(input, 'code');
    return code ? [{ system: param(input, 'system'), code, display: param(input, 'display') }] : [];
  }

  function validateResult(match, expectedDisplay) {
    const out = [{ name: 'result', valueBoolean: Boolean(match) }];
    if (match?.display) {
      out.push({ name: 'display', valueString: match.display });
    }
    if (match && expectedDisplay && match.display && expectedDisplay !== match.display) {
      out[0].valueBoolean = false;
    }
    return parameters(out);
  }

  async function valueSetValidateCode(r, id) {
    const input = opInput(r);
    const valueSet = await terminologyResource(r, 'ValueSet', id, param(input, 'url'));
    const members = valueSetCodings(valueSet);
    const candidates = codingsOf(input);
    if (!candidates.length) {
      return outcome(badRequest('No coding specified'));
    }
    let match;
    for (const c of candidates) {
      match = members.find((m) => m.code === c.code && (!c.system || m.system === c.system));
      if (match) {
        return resourceResponse(allOk, validateResult(match, c.display));
      }
    }
    return resourceResponse(allOk, validateResult(undefined));
  }

  async function codeSystemValidateCode(r, id) {
    const input = opInput(r);
    const coding = param(input, 'coding');
    const codeSystem = await terminologyResource(r, 'CodeSystem', id, param(input, 'url') ?? coding?.system);
    const code = coding?.code ?? param(input, 'code');
    if (!code) {
      return outcome(badRequest('No coding specified'));
    }
    const concept =
      coding?.system && coding.system !== codeSystem.url
        ? undefined
        : flatConcepts(codeSystem.concept).find((c) => c.code === code);
    return resourceResponse(allOk, validateResult(concept, coding?.display ?? param(input, 'display')));
  }

  async function translate(r, id) {
    const input = opInput(r);
    const conceptMap = await terminologyResource(r, 'ConceptMap', id, param(input, 'url'));
    const sources = codingsOf(input);
    if (!sources.length) {
      return outcome(badRequest('Source Coding (system + code) must be specified'));
    }
    const targetSystem = param(input, 'targetsystem') ?? param(input, 'targetSystem');
    const matches = [];
    for (const group of conceptMap.group ?? []) {
      if (targetSystem && group.target !== targetSystem) {
        continue;
      }
      for (const source of sources) {
        if (source.system && group.source && source.system !== group.source) {
          continue;
        }
        for (const element of group.element ?? []) {
          if (element.code !== source.code) {
            continue;
          }
          for (const target of element.target ?? []) {
            matches.push({
              name: 'match',
              part: [
                { name: 'equivalence', valueCode: target.equivalence ?? 'equivalent' },
                {
                  name: 'concept',
                  valueCoding: { system: group.target, code: target.code, ...(target.display ? { display: target.display } : {}) },
                },
              ],
            });
          }
        }
      }
    }
    return resourceResponse(allOk, parameters([{ name: 'result', valueBoolean: matches.length > 0 }, ...matches]));
  }

  // ---- dispatch -------------------------------------------------------------------------------

  const ROUTES = [
    ['POST', /^\/Binary\/?$/, (r) => binaryWrite(r, undefined), { raw: true }],
    ['PUT', /^\/Binary\/([^/$]+)$/, (r, m) => binaryWrite(r, m[1]), { raw: true }],
    ['GET', /^\/Binary\/([^/$]+)$/, (r, m) => binaryRead(r, m[1])],
    ['GET|POST', /^\/\$export$/, (r) => exportKickoff(r, 'system')],
    ['GET|POST', /^\/Patient\/\$export$/, (r) => exportKickoff(r, 'patient')],
    ['GET|POST', /^\/Group\/([^/]+)\/\$export$/, (r, m) => exportKickoff(r, 'group', m[1])],
    ['GET|DELETE', /^\/bulkdata\/export\/([^/]+)$/, (r, m) => exportStatus(r, m[1])],
    ['GET|DELETE', /^\/job\/([^/]+)\/status$/, (r, m) => jobStatus(r, m[1])],
    ['POST', /^\/Bot\/([^/]+)\/\$deploy$/, (r, m) => deployBot(r, m[1])],
    ['GET|POST', /^\/Bot\/([^/]+)\/\$execute$/, (r, m) => executeBot(r, m[1]), { raw: true }],
    ['GET|POST', /^\/Bot\/\$execute$/, (r) => executeBot(r, undefined), { raw: true }],
    ['GET|POST', /^\/Patient\/([^/]+)\/\$everything$/, (r, m) => everything(r, m[1])],
    ['GET', /^\/Patient\/([^/]+)\/\$ccda-export$/, (r, m) => ccdaExport(r, m[1])],
    ['POST', /^\/([A-Z][A-Za-z]+)\/([^/]+)\/\$expunge$/, (r, m) => expunge(r, m[1], m[2])],
    ['POST', /^\/([A-Z][A-Za-z]+)\/([^/]+)\/\$set-accounts$/, (r, m) => setAccounts(r, m[1], m[2])],
    ['GET|POST', /^\/ValueSet\/(?:([^/$]+)\/)?\$expand$/, (r, m) => expand(r, m[1])],
    ['GET|POST', /^\/ValueSet\/(?:([^/$]+)\/)?\$validate-code$/, (r, m) => valueSetValidateCode(r, m[1])],
    ['GET|POST', /^\/CodeSystem\/(?:([^/$]+)\/)?\$lookup$/, (r, m) => lookup(r, m[1])],
    ['GET|POST', /^\/CodeSystem\/(?:([^/$]+)\/)?\$validate-code$/, (r, m) => codeSystemValidateCode(r, m[1])],
    ['GET|POST', /^\/ConceptMap\/(?:([^/$]+)\/)?\$translate$/, (r, m) => translate(r, m[1])],
  ];

  /** The route for a FHIR path, or undefined for the router's own interactions. */
  function findRoute(method, path) {
    for (const [methods, pattern, handler, options] of ROUTES) {
      const match = pattern.exec(path);
      if (match && methods.split('|').includes(method)) {
        return { handler, match, raw: Boolean(options?.raw) };
      }
    }
    return undefined;
  }

  async function handle(route, r) {
    try {
      return await route.handler(r, route.match);
    } catch (err) {
      return outcome(normalizeOperationOutcome(err));
    }
  }

  // ---- /admin/projects/:id/invite ------------------------------------------------------------------

  async function invite(r, projectId, body) {
    if (!r.admin || r.projectId !== projectId) {
      return outcome(forbidden);
    }
    let input;
    try {
      input = JSON.parse(body.toString('utf8') || '{}');
    } catch {
      return outcome(badRequest('Content could not be parsed'));
    }
    const resourceType = input.resourceType ?? 'Practitioner';
    if (!['Patient', 'Practitioner', 'RelatedPerson'].includes(resourceType)) {
      return outcome(badRequest('Invalid resourceType'));
    }
    for (const field of ['firstName', 'lastName']) {
      if (!input[field]) {
        return outcome(badRequest(`${field} is required`));
      }
    }
    const email = input.email?.toLowerCase();
    const projectRef = createReference(state.repo.rawGet('Project', projectId));
    let user = [...(state.repo.resources.get('User')?.values() ?? [])].find(
      (u) => u.email?.toLowerCase() === email && email
    );
    if (!user) {
      user = await state.repo.createResource({
        resourceType: 'User',
        firstName: input.firstName,
        lastName: input.lastName,
        ...(input.externalId ? { externalId: input.externalId } : {}),
        ...(email ? { email } : {}),
        ...(input.password ? { passwordHash: crypto.createHash('sha256').update(input.password).digest('hex') } : {}),
        ...(input.scope === 'server' ? {} : { project: projectRef }),
        meta: { project: projectId },
      });
    }
    const existing = [...(state.repo.resources.get('ProjectMembership')?.values() ?? [])].find(
      (m) => m.user?.reference === `User/${user.id}` && m.project?.reference === `Project/${projectId}`
    );
    if (existing) {
      return outcome(badRequest('User is already a member of this project'));
    }
    const profile = await r.repo.createResource({
      resourceType,
      name: [{ given: [input.firstName], family: input.lastName }],
      ...(email ? { telecom: [{ system: 'email', use: 'work', value: email }] } : {}),
    });
    const membershipInput = input.membership ?? {};
    const accessPolicy = membershipInput.accessPolicy ?? input.accessPolicy;
    const admin = membershipInput.admin ?? input.admin;
    const membership = await r.repo.createResource({
      resourceType: 'ProjectMembership',
      project: projectRef,
      invitedBy: createReference(r.client),
      user: { reference: `User/${user.id}`, display: email ?? `${input.firstName} ${input.lastName}` },
      profile: createReference(profile),
      ...(accessPolicy ? { accessPolicy } : {}),
      ...(membershipInput.access ? { access: membershipInput.access } : {}),
      ...(admin ? { admin: true } : {}),
    });
    return { status: 200, headers: { 'Content-Type': env.FHIR_JSON }, body: JSON.stringify(membership) };
  }

  return { reset, findRoute, handle, handleStorage, invite, completeAllJobs, listJobs };
}
