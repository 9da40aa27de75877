// The in-memory repository: Medplum's MemoryRepository plus the server-side rules that real
// Medplum applies and the router package leaves out (validation, meta.author/onBehalfOf,
// 410 after delete, access policies, no new version for an unchanged update).
import {
  OperationOutcomeError,
  deepClone,
  deepEquals,
  forbidden,
  gone,
  matchesSearchRequest,
  notFound,
  parseSearchRequest,
  preconditionFailed,
  validateResource,
} from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';

// Medplum lets only project admins touch these (fhir/accesspolicy.ts, projectAdminResourceTypes).
const PROJECT_ADMIN_TYPES = new Set([
  'Bot',
  'ClientApplication',
  'Project',
  'ProjectMembership',
  'SmartAppLaunch',
  'User',
  'UserConfiguration',
]);
// Only super admins may touch these; no client of this server is one.
const PROTECTED_TYPES = new Set(['DomainConfiguration', 'JsonWebKey', 'Login', 'PasswordChangeRequest']);
// Fields of Meta that the server owns: a client cannot set them, and they are hidden unless
// the request says `X-Medplum: extended` (server repo.ts removeHiddenFields).
const SERVER_META = ['author', 'project', 'account', 'accounts', 'compartment', 'onBehalfOf'];
const HIDDEN_META = ['author', 'project', 'account', 'compartment'];

/**
 * Shared storage plus one lightweight view per request. A view is created with
 * `Object.create(base)`, so it shares the base's maps and carries its own `ctx`.
 */
export class ServerRepository extends MemoryRepository {
  constructor() {
    super();
    /** `${type}/${id}` of resources deleted and not re-created: reads answer 410. */
    this.deleted = new Set();
    /** The context of the system repository: no policy, nothing hidden. */
    this.ctx = { system: true };
  }

  /** Empties the store (reset to seed). */
  clearAll() {
    this.clear();
    this.deleted.clear();
  }

  /**
   * A view of this repository acting for one request.
   * @param {object} ctx - author, onBehalfOf, projectRef, admin, policy, extended
   */
  forRequest(ctx) {
    const view = Object.create(this);
    view.ctx = ctx;
    return view;
  }

  // ---- helpers --------------------------------------------------------------------------

  /** Tells the write listener (subscriptions) about a committed write; never while seeding. */
  written(resource, previous, interaction) {
    if (!this.seeding) {
      this.onWrite?.(resource, previous, interaction);
    }
  }

  rawGet(resourceType, id) {
    return this.resources.get(resourceType)?.get(id);
  }

  isDeleted(resourceType, id) {
    return this.deleted.has(`${resourceType}/${id}`);
  }

  /** Throws 403 unless the acting membership may use this resource type at all. */
  checkType(resourceType, write) {
    const ctx = this.ctx;
    if (ctx.system) {
      return;
    }
    if (PROTECTED_TYPES.has(resourceType)) {
      throw new OperationOutcomeError(forbidden);
    }
    if (PROJECT_ADMIN_TYPES.has(resourceType) && !ctx.admin) {
      throw new OperationOutcomeError(forbidden);
    }
    if (!ctx.policy) {
      return;
    }
    const entries = policyEntries(ctx.policy, resourceType);
    if (entries.length === 0 || (write && entries.every((e) => e.readonly))) {
      throw new OperationOutcomeError(forbidden);
    }
  }

  /** True if the policy's criteria for this type admit the resource. */
  policyAdmits(resource, write) {
    const policy = this.ctx.policy;
    if (this.ctx.system || !policy) {
      return true;
    }
    return policyEntries(policy, resource.resourceType)
      .filter((e) => !write || !e.readonly)
      .some((e) => !e.criteria || matchesSearchRequest(resource, e.criteria));
  }

  /** What a reader of this request sees of a stored resource. */
  present(resource) {
    const out = deepClone(resource);
    if (!this.ctx.system && !this.ctx.extended && out.meta) {
      for (const key of HIDDEN_META) {
        delete out.meta[key];
      }
    }
    return out;
  }

  // ---- reads ---------------------------------------------------------------------------

  async readResource(resourceType, id) {
    this.checkType(resourceType, false);
    const resource = this.rawGet(resourceType, id);
    if (!resource) {
      throw new OperationOutcomeError(this.isDeleted(resourceType, id) ? gone : notFound);
    }
    if (!this.policyAdmits(resource, false)) {
      throw new OperationOutcomeError(notFound);
    }
    return this.present(resource);
  }

  async readHistory(resourceType, id, options) {
    this.checkType(resourceType, false);
    const versions = this.history.get(resourceType)?.get(id);
    if (!versions?.length) {
      throw new OperationOutcomeError(notFound);
    }
    const current = this.rawGet(resourceType, id) ?? versions.at(-1);
    if (!current.__deleted && !this.policyAdmits(current, false)) {
      throw new OperationOutcomeError(notFound);
    }
    // Newest first, as Medplum answers; MemoryRepository reverses its array in place instead.
    let newestFirst = versions.slice().reverse();
    const total = newestFirst.length;
    const offset = options?.offset ?? 0;
    const limit = options?.limit ?? 100;
    newestFirst = newestFirst.slice(offset, offset + limit);
    return {
      resourceType: 'Bundle',
      type: 'history',
      entry: newestFirst.map((version) =>
        version.__deleted
          ? { __deleted: true, resourceType, id, versionId: version.meta.versionId }
          : { resource: this.present(version) }
      ),
      total,
    };
  }

  async readVersion(resourceType, id, versionId) {
    this.checkType(resourceType, false);
    const versions = this.history.get(resourceType)?.get(id);
    const version = versions?.find((v) => v.meta?.versionId === versionId);
    if (!version) {
      throw new OperationOutcomeError(notFound);
    }
    if (version.__deleted) {
      throw new OperationOutcomeError(gone);
    }
    if (!this.policyAdmits(version, false)) {
      throw new OperationOutcomeError(notFound);
    }
    return this.present(version);
  }

  async search(searchRequest) {
    this.checkType(searchRequest.resourceType, false);
    const policy = this.ctx.policy;
    let postFilter;
    if (!this.ctx.system && policy) {
      const entries = policyEntries(policy, searchRequest.resourceType);
      if (!entries.some((e) => !e.criteria)) {
        if (entries.length === 1) {
          // One criteria: add its filters so that count, offset and total stay exact.
          searchRequest = {
            ...searchRequest,
            filters: [...(searchRequest.filters ?? []), ...(entries[0].criteria.filters ?? [])],
          };
        } else {
          postFilter = (r) => this.policyAdmits(r, false);
        }
      }
    }
    const bundle = await super.search(searchRequest);
    if (bundle.entry) {
      let entries = bundle.entry;
      if (postFilter) {
        entries = entries.filter((e) => e.search?.mode !== 'match' || postFilter(e.resource));
      }
      bundle.entry = entries.map((e) => ({ ...e, resource: e.resource && this.present(e.resource) }));
    }
    return bundle;
  }

  // ---- writes --------------------------------------------------------------------------

  /**
   * Validates a write and stamps the server-owned meta fields, as Medplum's repo does. Keys
   * keep Medplum's order: a new id goes after the client's fields, and meta stays where the
   * client put it or comes last.
   */
  prepareWrite(resource, create, options) {
    const prepared = deepClone(resource);
    if (this.seeding || this.ctx.system) {
      return prepared;
    }
    if (create) {
      // POST ignores a client id unless the router assigned it (batch urn:uuid entries). An id
      // key present in the input keeps its place (Medplum's Binary handler puts it second).
      const id = options?.assignedId && prepared.id ? prepared.id : this.generateId();
      if (!options?.keepIdPosition || !('id' in prepared)) {
        delete prepared.id;
      }
      prepared.id = id;
    }
    const hadMeta = prepared.meta !== undefined;
    const meta = { ...(prepared.meta ?? {}) };
    for (const key of [...SERVER_META, 'versionId', 'lastUpdated']) {
      delete meta[key];
    }
    if (hadMeta) {
      prepared.meta = meta;
    }
    if (hadMeta && Object.keys(meta).length === 0) {
      // An emptied meta keeps its place but is not the client's to have validated.
      const { meta: _empty, ...rest } = prepared;
      validateResource(rest);
    } else {
      validateResource(prepared);
    }
    prepared.meta = meta; // in place if the client sent meta, else last
    // A placeholder keeps meta non-empty through MemoryRepository's stringify (which would drop
    // an empty one and re-add it last); the base replaces it with the real version id.
    meta.versionId = 'pending';
    return prepared;
  }

  /** Puts the stored version's meta in Medplum's order (client keys, then server keys). */
  stampMeta(stored, accounts) {
    const ctx = this.ctx;
    if (this.seeding || ctx.system) {
      return;
    }
    const { versionId, lastUpdated, ...clientMeta } = stored.meta;
    const meta = { ...clientMeta, versionId, lastUpdated };
    if (accounts?.length) {
      meta.accounts = accounts;
    }
    if (ctx.author) {
      meta.author = ctx.author;
    }
    if (ctx.onBehalfOf) {
      meta.onBehalfOf = ctx.onBehalfOf;
    }
    if (ctx.projectRef) {
      meta.project = ctx.projectRef.reference.split('/')[1];
      meta.compartment = [ctx.projectRef, ...(accounts ?? []).map((a) => ({ reference: a.reference }))];
    }
    stored.meta = meta; // the same object is the current version and the history entry
  }

  async createResource(resource, options, update = false) {
    this.checkType(resource.resourceType, true);
    const prepared = this.prepareWrite(resource, !update, options);
    if (!this.policyAdmits({ ...prepared, meta: { ...prepared.meta, ...this.serverMeta() } }, true)) {
      throw new OperationOutcomeError(forbidden);
    }
    const previous = update ? this.rawGet(resource.resourceType, resource.id) : undefined;
    const result = await super.createResource(prepared, options, update);
    const stored = this.rawGet(result.resourceType, result.id);
    this.stampMeta(stored, this.accountsFor(resource, previous));
    this.deleted.delete(`${result.resourceType}/${result.id}`);
    this.written(stored, previous, previous ? 'update' : 'create');
    return this.present(stored);
  }

  async conditionalCreate(resource, search, options) {
    this.checkType(resource.resourceType, true);
    // Validate before the match lookup, as a create would; the base then stores it unchanged.
    const prepared = this.prepareWrite(resource, true, options);
    if (!this.policyAdmits(prepared, true)) {
      throw new OperationOutcomeError(forbidden);
    }
    const policy = this.ctx.policy;
    if (!this.ctx.system && policy) {
      const entries = policyEntries(policy, search.resourceType).filter((e) => e.criteria);
      if (entries.length === 1) {
        search = { ...search, filters: [...(search.filters ?? []), ...(entries[0].criteria.filters ?? [])] };
      }
    }
    // The id is ours (prepareWrite), so the base must not compare it with the match's.
    const result = await super.conditionalCreate(prepared, search, { ...options, assignedId: true });
    const stored = this.rawGet(result.resource.resourceType, result.resource.id);
    if (result.outcome.id === 'created') {
      this.stampMeta(stored, this.accountsFor(resource, undefined));
      this.deleted.delete(`${stored.resourceType}/${stored.id}`);
    }
    return { ...result, resource: this.present(stored) };
  }

  /**
   * meta.accounts of a write: what a project admin sends, else what the resource had (Medplum
   * ignores accounts from other callers and keeps the existing ones on update).
   */
  accountsFor(resource, previous) {
    const sent = resource.meta?.accounts ?? (resource.meta?.account ? [resource.meta.account] : undefined);
    if (this.ctx.admin && sent) {
      return sent;
    }
    return previous?.meta?.accounts;
  }

  /** The meta fields this request's writes get (for policy checks before storing). */
  serverMeta() {
    const meta = {};
    if (this.ctx.onBehalfOf) {
      meta.onBehalfOf = this.ctx.onBehalfOf;
    }
    return meta;
  }

  async updateResource(resource, options) {
    this.checkType(resource.resourceType, true);
    const existing = resource.id ? this.rawGet(resource.resourceType, resource.id) : undefined;
    if (existing && !this.policyAdmits(existing, true)) {
      throw new OperationOutcomeError(this.policyAdmits(existing, false) ? forbidden : notFound);
    }
    if (options?.ifMatch) {
      if (!existing) {
        throw new OperationOutcomeError(this.isDeleted(resource.resourceType, resource.id) ? gone : notFound);
      }
      if (existing.meta?.versionId !== options.ifMatch) {
        throw new OperationOutcomeError(preconditionFailed);
      }
    }
    const accountsChanged =
      (this.ctx.admin || this.ctx.system) &&
      resource.meta?.accounts !== undefined &&
      JSON.stringify(resource.meta.accounts) !== JSON.stringify(existing?.meta?.accounts);
    if (existing && !this.seeding && !accountsChanged && isNotModified(existing, resource)) {
      // Medplum keeps the current version when nothing changed.
      return this.present(existing);
    }
    return this.createResource(resource, undefined, true);
  }

  async deleteResource(resourceType, id, options) {
    this.checkType(resourceType, true);
    const existing = this.rawGet(resourceType, id);
    if (!existing) {
      throw new OperationOutcomeError(this.isDeleted(resourceType, id) ? gone : notFound);
    }
    if (!this.policyAdmits(existing, false)) {
      throw new OperationOutcomeError(notFound);
    }
    if (!this.policyAdmits(existing, true)) {
      throw new OperationOutcomeError(forbidden);
    }
    if (options?.ifMatch && existing.meta?.versionId !== options.ifMatch) {
      throw new OperationOutcomeError(preconditionFailed);
    }
    this.resources.get(resourceType)?.delete(id);
    this.deleted.add(`${resourceType}/${id}`);
    this.written(existing, existing, 'delete'); // as Medplum: the last version, for subscriptions
    // A tombstone in the history, so that history shows the delete and vread of it is 410.
    this.history
      .get(resourceType)
      ?.get(id)
      ?.push({ __deleted: true, resourceType, id, meta: { versionId: this.generateId(), lastUpdated: new Date().toISOString() } });
  }
}

function policyEntries(policy, resourceType) {
  return policy.resource.filter((e) => e.resourceType === resourceType || e.resourceType === '*');
}

/** The parts of a stored resource that a client's update can change. */
function comparable(resource) {
  const copy = deepClone(resource);
  if (copy.meta) {
    for (const key of [...SERVER_META, 'versionId', 'lastUpdated']) {
      delete copy.meta[key];
    }
    if (Object.keys(copy.meta).length === 0) {
      delete copy.meta;
    }
  }
  return copy;
}

function isNotModified(existing, incoming) {
  return deepEquals(comparable(existing), comparable(incoming));
}

/**
 * Compiles a ProjectMembership's AccessPolicy the way Medplum parameterizes it
 * (`%profile`, `%profile.id`), keeping only what this server enforces: resource types,
 * criteria and readonly.
 * @returns {{resource: object[]}|undefined} undefined when the membership has no policy
 */
export function compileAccessPolicy(membership, readPolicy) {
  if (!membership.accessPolicy) {
    return undefined;
  }
  const policy = readPolicy(membership.accessPolicy.reference);
  if (!policy) {
    return { resource: [] };
  }
  const profileRef = membership.profile?.reference ?? '';
  const profileId = profileRef.split('/')[1] ?? '';
  const json = JSON.stringify(policy).replaceAll('%profile.id', profileId).replaceAll('%profile', profileRef);
  const parsed = JSON.parse(json);
  return {
    resource: (parsed.resource ?? []).map((r) => ({
      resourceType: r.resourceType,
      readonly: Boolean(r.readonly),
      criteria: r.criteria ? parseSearchRequest(r.criteria) : undefined,
    })),
  };
}
