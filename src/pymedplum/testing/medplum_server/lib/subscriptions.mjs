// WebSocket subscriptions, as Medplum's server serves them (packages/server/src/subscriptions/
// websockets.ts, fhir/operations/getwsbindingtoken.ts, workers/subscription.ts):
//
// - a Subscription with `channel.type: websocket` is created with the ordinary FHIR create;
// - `Subscription/{id}/$get-ws-binding-token` returns Parameters `token`, `expiration` (one hour),
//   `subscription` and `websocket-url` (`ws[s]://<base>/ws/subscriptions-r4`), in projects with
//   the `websocket-subscriptions` feature (else 400);
// - on `/ws/subscriptions-r4` a client sends `{"type":"bind-with-token","payload":{"token"}}` and
//   gets a handshake Bundle; `{"type":"ping"}` is answered `{"type":"pong"}`; every 10 s each
//   bound socket gets a heartbeat Bundle; `unbind-from-token` unbinds;
// - a create, update or delete of a resource matching a bound Subscription's criteria (core's
//   resourceMatchesSubscriptionCriteria) and readable under the access policy of the membership
//   that created it sends an event-notification Bundle with the resource (a delete sends the last
//   version); a binding whose token expired gets nothing more;
// - when a socket closes, the Subscriptions bound to it are dropped (Medplum deletes their cache
//   entry: reads answer 404).
import crypto from 'node:crypto';
import {
  badRequest,
  createReference,
  normalizeErrorString,
  resourceMatchesSubscriptionCriteria,
} from '@medplum/core';
import { WebSocketServer } from 'ws';
import { compileAccessPolicy } from './repo.mjs';

const WS_PATH = '/ws/subscriptions-r4';
const DEFAULT_HEARTBEAT_MS = 10_000;
const DEFAULT_TOKEN_LIFETIME_SECONDS = 3600;
const FEATURE = 'websocket-subscriptions';

function base64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

export function createSubscriptions(env) {
  const { state, FHIR_PREFIX } = env;
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
  /** Every open subscription socket -> { bindings: Map<subscriptionId, binding>, silenced } */
  const sockets = new Map();
  let settings;
  let counters;
  let delivery = Promise.resolve(); // notifications go out one at a time, in write order
  let heartbeatTimer;

  function reset() {
    for (const socket of [...sockets.keys()]) {
      socket.terminate();
    }
    settings = { heartbeatMs: DEFAULT_HEARTBEAT_MS, tokenLifetimeSeconds: DEFAULT_TOKEN_LIFETIME_SECONDS };
    counters = { notificationsSent: 0, heartbeatsSent: 0, bindings: 0 };
    startHeartbeat();
  }

  function startHeartbeat() {
    clearInterval(heartbeatTimer);
    heartbeatTimer = setInterval(sendHeartbeats, settings.heartbeatMs);
    heartbeatTimer.unref();
  }

  function send(socket, value) {
    const entry = sockets.get(socket);
    if (!entry || entry.silenced || socket.readyState !== socket.OPEN) {
      return false;
    }
    socket.send(JSON.stringify(value), { binary: false });
    return true;
  }

  // ---- tokens ----------------------------------------------------------------------------------

  function signToken(claims) {
    const unsigned = `${base64url({ alg: 'HS256', typ: 'JWT' })}.${base64url(claims)}`;
    const signature = crypto.createHmac('sha256', state.tokenSecret).update(unsigned).digest('base64url');
    return `${unsigned}.${signature}`;
  }

  /** The claims of a binding token we signed that has not expired, or undefined. */
  function verifyToken(token) {
    const parts = typeof token === 'string' ? token.split('.') : [];
    if (parts.length !== 3) {
      return undefined;
    }
    const expected = crypto.createHmac('sha256', state.tokenSecret).update(`${parts[0]}.${parts[1]}`).digest();
    const given = Buffer.from(parts[2], 'base64url');
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
      return undefined;
    }
    let claims;
    try {
      claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    return typeof claims.exp === 'number' && claims.exp * 1000 > Date.now() ? claims : undefined;
  }

  // ---- $get-ws-binding-token --------------------------------------------------------------------

  async function bindingToken(r, subscriptionId) {
    const project = state.repo.rawGet('Project', r.projectId);
    if (!project?.features?.includes(FEATURE)) {
      return env.outcomeResponse(badRequest('WebSocket subscriptions not enabled for current project'));
    }
    try {
      await r.repo.readResource('Subscription', subscriptionId);
    } catch (err) {
      return env.outcomeResponse(badRequest(`Error reading subscription: ${normalizeErrorString(err)}`));
    }
    const now = Date.now();
    const lifetime = settings.tokenLifetimeSeconds;
    const iat = Math.floor(now / 1000);
    // Never before the advertised expiration (JWT times are whole seconds).
    const exp = Math.ceil((now + lifetime * 1000) / 1000);
    const token = signToken({
      client_id: r.client.id,
      login_id: crypto.randomUUID(),
      sub: r.client.id,
      profile: r.membership.profile?.reference,
      membership_id: r.membership.id, // whose access policy filters the notifications
      subscription_id: subscriptionId,
      iat,
      exp,
    });
    const wsBase = state.baseUrl.replace(/^http:\/\//, 'ws://').replace(/^https:\/\//, 'wss://');
    const parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'token', valueString: token },
        { name: 'expiration', valueDateTime: new Date(now + lifetime * 1000).toISOString() },
        { name: 'subscription', valueString: subscriptionId },
        { name: 'websocket-url', valueUrl: `${wsBase}${WS_PATH}` },
      ],
    };
    return { status: 200, headers: { 'Content-Type': env.FHIR_JSON, ...env.rateLimitHeaders() }, body: JSON.stringify(parameters) };
  }

  const ROUTES = [['GET|POST', /^\/Subscription\/([^/$]+)\/\$get-ws-binding-token$/, (r, m) => bindingToken(r, m[1])]];

  /** A route for ops.handle (same shape as lib/ops.mjs routes), or undefined. */
  function findRoute(method, path) {
    for (const [methods, pattern, handler] of ROUTES) {
      const match = pattern.exec(path);
      if (match && methods.split('|').includes(method)) {
        return { handler, match, raw: false };
      }
    }
    return undefined;
  }

  // ---- the socket protocol ------------------------------------------------------------------------

  function statusResource(type, subscriptionId) {
    return {
      resourceType: 'SubscriptionStatus',
      id: crypto.randomUUID(),
      status: 'active',
      type,
      subscription: { reference: `Subscription/${subscriptionId}` },
    };
  }

  function historyBundle(entry) {
    return { id: crypto.randomUUID(), resourceType: 'Bundle', type: 'history', timestamp: new Date().toISOString(), entry };
  }

  function onBind(socket, token) {
    const claims = verifyToken(token);
    if (!claims) {
      send(socket, badRequest('Token failed to validate. Check token expiry.'));
      return;
    }
    if (!claims.subscription_id) {
      send(socket, badRequest('Token claims missing subscription_id. Make sure you are sending the correct token.'));
      socket.terminate();
      return;
    }
    const entry = sockets.get(socket);
    entry.bindings.set(claims.subscription_id, {
      subscriptionId: claims.subscription_id,
      membershipId: claims.membership_id,
      expiresAt: claims.exp * 1000,
    });
    counters.bindings++;
    send(socket, historyBundle([{ resource: statusResource('handshake', claims.subscription_id) }]));
  }

  function onUnbind(socket, token) {
    const claims = verifyToken(token);
    if (claims?.subscription_id) {
      sockets.get(socket)?.bindings.delete(claims.subscription_id);
    }
  }

  function onMessage(socket, data) {
    let msg;
    try {
      msg = JSON.parse(data.toString('utf8'));
    } catch {
      return; // Medplum logs and ignores what it cannot parse
    }
    if (sockets.get(socket)?.silenced) {
      return;
    }
    if (msg?.type === 'ping') {
      send(socket, { type: 'pong' });
    } else if (msg?.type === 'bind-with-token' || msg?.type === 'unbind-from-token') {
      const token = msg.payload?.token;
      if (!token) {
        return;
      }
      if (msg.type === 'bind-with-token') {
        onBind(socket, token);
      } else {
        onUnbind(socket, token);
      }
    }
  }

  function onClose(socket) {
    const entry = sockets.get(socket);
    sockets.delete(socket);
    // Medplum drops the Subscriptions bound to a closed socket (their cache entry is deleted).
    for (const subscriptionId of entry?.bindings.keys() ?? []) {
      state.repo.resources.get('Subscription')?.delete(subscriptionId);
    }
  }

  function handleUpgrade(req, socket, head) {
    const path = new URL(req.url, state.baseUrl).pathname;
    if (path !== WS_PATH) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.set(ws, { bindings: new Map(), silenced: false });
      ws.on('message', (data) => onMessage(ws, data));
      ws.on('close', () => onClose(ws));
      ws.on('error', () => ws.terminate());
    });
  }

  function sendHeartbeats() {
    for (const [socket, entry] of sockets) {
      if (entry.bindings.size === 0) {
        continue;
      }
      const bundle = historyBundle([...entry.bindings.keys()].map((id) => ({ resource: statusResource('heartbeat', id) })));
      if (send(socket, bundle)) {
        counters.heartbeatsSent++;
      }
    }
  }

  // ---- notifications ----------------------------------------------------------------------------

  function readPolicy(reference) {
    const [type, id] = reference.split('/');
    return state.repo.rawGet(type, id);
  }

  /** Whether the membership that bound the subscription may read the resource. */
  function readable(membershipId, resource) {
    const membership = membershipId && state.repo.rawGet('ProjectMembership', membershipId);
    if (!membership) {
      return false;
    }
    const view = state.repo.forRequest({
      admin: membership.admin === true,
      policy: compileAccessPolicy(membership, readPolicy),
    });
    try {
      view.checkType(resource.resourceType, false);
    } catch {
      return false;
    }
    return view.policyAdmits(resource, false);
  }

  async function deliver(resource, previous, interaction) {
    const now = Date.now();
    for (const [socket, entry] of sockets) {
      for (const binding of [...entry.bindings.values()]) {
        if (binding.expiresAt <= now) {
          entry.bindings.delete(binding.subscriptionId); // Medplum cleans up expired entries
          continue;
        }
        const subscription = state.repo.rawGet('Subscription', binding.subscriptionId);
        if (!subscription || subscription.channel?.type !== 'websocket') {
          continue;
        }
        let matches = false;
        try {
          matches = await resourceMatchesSubscriptionCriteria({
            resource,
            subscription,
            context: { interaction },
            getPreviousResource: async () => previous,
          });
        } catch {
          matches = false;
        }
        if (!matches || !readable(binding.membershipId, resource)) {
          continue;
        }
        const timestamp = new Date().toISOString();
        const bundle = historyBundle([
          {
            resource: {
              id: crypto.randomUUID(),
              resourceType: 'SubscriptionStatus',
              status: 'active',
              type: 'event-notification',
              subscription: { reference: `Subscription/${binding.subscriptionId}` },
              notificationEvent: [{ eventNumber: '0', timestamp, focus: createReference(resource) }],
            },
          },
        ]);
        bundle.timestamp = timestamp;
        bundle.entry.push({ resource, fullUrl: `${state.baseUrl}${FHIR_PREFIX}/${resource.resourceType}/${resource.id}` });
        if (send(socket, bundle)) {
          counters.notificationsSent++;
        }
      }
    }
  }

  /** Called by the repository after every committed write (not while seeding). */
  function onWrite(resource, previous, interaction) {
    if (resource.resourceType === 'AuditEvent' || sockets.size === 0) {
      return;
    }
    if (resource.resourceType === 'Subscription' && resource.channel?.type === 'websocket') {
      return; // Medplum never notifies about websocket Subscriptions themselves
    }
    const snapshot = structuredClone(resource);
    const before = previous ? structuredClone(previous) : undefined;
    delivery = delivery.then(() => deliver(snapshot, before, interaction)).catch((err) => {
      process.stderr.write(`medplum test server: subscription delivery failed: ${err?.stack ?? err}\n`);
    });
  }

  // ---- test controls (/__test__/subscriptions) ---------------------------------------------------

  function status() {
    // Sockets still open: one whose close handshake has begun no longer counts.
    const open = [...sockets].filter(([socket]) => socket.readyState === socket.OPEN);
    const bindings = [];
    for (const [, entry] of open) {
      for (const b of entry.bindings.values()) {
        const subscription = state.repo.rawGet('Subscription', b.subscriptionId);
        bindings.push({
          subscription_id: b.subscriptionId,
          criteria: subscription?.criteria ?? null,
          membership: b.membershipId ? `ProjectMembership/${b.membershipId}` : null,
          expires_at: new Date(b.expiresAt).toISOString(),
          silenced: entry.silenced,
        });
      }
    }
    return {
      sockets: open.length,
      bindings,
      heartbeat_ms: settings.heartbeatMs,
      token_lifetime_seconds: settings.tokenLifetimeSeconds,
      notifications_sent: counters.notificationsSent,
      heartbeats_sent: counters.heartbeatsSent,
      binds: counters.bindings,
    };
  }

  /** Handles `/__test__/subscriptions[...]`; returns [status, body] or undefined (no such control). */
  function control(method, path, spec) {
    if (method === 'GET' && path === '/__test__/subscriptions') {
      return [200, status()];
    }
    if (method === 'POST' && path === '/__test__/subscriptions') {
      if (spec.heartbeat_ms !== undefined) {
        const ms = Number(spec.heartbeat_ms);
        if (!Number.isFinite(ms) || ms < 10) {
          return [400, { error: 'heartbeat_ms must be a number >= 10' }];
        }
        settings.heartbeatMs = ms;
        startHeartbeat();
      }
      if (spec.token_lifetime_seconds !== undefined) {
        const seconds = Number(spec.token_lifetime_seconds);
        if (!Number.isFinite(seconds) || seconds <= 0) {
          return [400, { error: 'token_lifetime_seconds must be a number > 0' }];
        }
        settings.tokenLifetimeSeconds = seconds;
      }
      return [200, status()];
    }
    if (method === 'POST' && path === '/__test__/subscriptions/drop') {
      // terminate: the TCP connection is destroyed (a network drop); close: a normal close frame;
      // silence: the socket stays open but the server sends and answers nothing on it.
      const mode = spec.mode ?? 'terminate';
      if (!['terminate', 'close', 'silence'].includes(mode)) {
        return [400, { error: `unknown mode: ${mode}` }];
      }
      let count = 0;
      for (const [socket, entry] of sockets) {
        if (entry.bindings.size === 0 || entry.silenced) {
          continue;
        }
        count++;
        if (mode === 'terminate') {
          socket.terminate();
        } else if (mode === 'close') {
          socket.close(1001, 'going away');
        } else {
          entry.silenced = true;
        }
      }
      return [200, { dropped: count, mode }];
    }
    return undefined;
  }

  reset();
  return { findRoute, handleUpgrade, onWrite, reset, control };
}
