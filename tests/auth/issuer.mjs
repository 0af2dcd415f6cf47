#!/usr/bin/env node
// Test-only OAuth 2.1 authorization server for codemode-mcp's resource-server tests.
//
// Wraps panva's `oidc-provider` (client_credentials grant, RFC 8707 resource
// indicators, JWT access tokens signed RS256) and adds a few /test/* endpoints
// that let tests steer it. Never use outside tests: the /test/* endpoints mint
// arbitrary tokens.
//
// Usage: node tests/auth/issuer.mjs [--port N] [--resource URI] [--ttl SECONDS] [--ignore-stdin]
//   The package is imported from $CODEMODE_TEST_NODE_MODULES (a node_modules
//   directory) when set, else by bare specifier.
//   Prints one JSON line on stdout once listening:
//     {"issuer":"http://127.0.0.1:PORT","jwks_uri":"...","token_endpoint":"..."}
//   Exits when stdin reaches EOF (unless --ignore-stdin), or on SIGTERM/SIGINT/SIGHUP.
//
// Endpoints (besides oidc-provider's own: /.well-known/openid-configuration,
// /.well-known/oauth-authorization-server, /jwks, /token, ...):
//   POST /test/resource {"resource": URI} or {"resources": [URI, ...]}  -> 204
//       Sets the accepted resource indicator(s); the first is the default
//       resource for token requests that send none.
//   POST /test/mint {"claims": {...}, "key": "issuer"|"stray"|"previous", "header": {...}}
//       -> {"token": JWT}. Defaults: iss, aud (current resource), sub "minted",
//       client_id "agent-a", scope "mcp:execute", iat now, exp now+300, jti random;
//       given claims/header fields are merged over the defaults, null removes one.
//       header.alg may be RS256/RS384/RS512/PS256/PS384/PS512 or "none" (unsigned).
//   POST /test/rotate {"keep_previous": false} -> {"kid", "previous_kid", "jwks_uri"}
//       New signing key; the provider is rebuilt on the same port and signs with
//       it. keep_previous: true keeps the old public key in the JWKS as well.
//   GET  /test/stats -> {"jwks_requests", "token_requests", "discovery_requests"}

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

// oidc-provider prints NOTICEs with console.info; stdout is reserved for the
// single JSON line, so everything else goes to stderr.
console.log = console.info = console.debug = (...args) => console.error(...args);

// ---------------------------------------------------------------- arguments
const args = process.argv.slice(2);
const opts = { port: 0, resource: undefined, ttl: 600, ignoreStdin: false };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const value = () => {
    if (i + 1 >= args.length) fail(`${a} needs a value`);
    return args[++i];
  };
  if (a === '--port') opts.port = Number(value());
  else if (a === '--resource') opts.resource = value();
  else if (a === '--ttl') opts.ttl = Number(value());
  else if (a === '--ignore-stdin') opts.ignoreStdin = true;
  else fail(`unknown argument ${a}`);
}
if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) fail('--port must be 0..65535');
if (!Number.isInteger(opts.ttl) || opts.ttl <= 0) fail('--ttl must be a positive integer');

function fail(msg) {
  console.error(`issuer.mjs: ${msg}`);
  process.exit(2);
}

// ------------------------------------------------------------------ lifetime
const exit = (code = 0) => process.exit(code);
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => exit(0));
if (!opts.ignoreStdin) {
  const stdinGone = () => {
    console.error('issuer.mjs: stdin closed, exiting (pass --ignore-stdin to keep running)');
    exit(0);
  };
  process.stdin.on('end', stdinGone);
  process.stdin.on('close', stdinGone);
  process.stdin.on('error', stdinGone);
  process.stdin.resume();
}

// ------------------------------------------------------------------- imports
let oidcModule;
let oidcEntry;
try {
  const nm = process.env.CODEMODE_TEST_NODE_MODULES;
  if (nm) {
    // ESM ignores NODE_PATH: resolve the entry point from that directory instead.
    oidcEntry = createRequire(path.join(path.resolve(nm), 'noop.js')).resolve('oidc-provider');
    oidcModule = await import(pathToFileURL(oidcEntry).href);
  } else {
    oidcModule = await import('oidc-provider');
  }
} catch (err) {
  fail(`cannot import oidc-provider (CODEMODE_TEST_NODE_MODULES=${process.env.CODEMODE_TEST_NODE_MODULES ?? ''}): ${err.message}`);
}
const { Provider, errors } = oidcModule;

// --------------------------------------------------------------------- keys
function newRsaKey(prefix) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `${prefix}-${crypto.randomBytes(6).toString('hex')}`;
  const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  return { kid, privateKey, privateJwk };
}

let signingKey = newRsaKey('issuer');
let previousKey = null;
let keepPrevious = false;
const strayKey = newRsaKey('stray');

// ----------------------------------------------------------------- resources
const SCOPES = 'mcp:execute codemode:operator';
let resources = opts.resource ? [opts.resource] : [];

const clients = [
  ['agent-a', 'secret-a-0123456789'],
  ['agent-b', 'secret-b-0123456789'],
].map(([client_id, client_secret]) => ({
  client_id,
  client_secret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  // oidc-provider accepts client_secret_post as well as client_secret_basic
  // for a client registered with either.
  token_endpoint_auth_method: 'client_secret_basic',
  scope: SCOPES,
}));

// ------------------------------------------------------------------ provider
let issuer;
let handler;

function buildProvider() {
  const keys = [signingKey.privateJwk];
  if (keepPrevious && previousKey) keys.push(previousKey.privateJwk);
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys },
    scopes: SCOPES.split(' '),
    clientDefaults: { id_token_signed_response_alg: 'RS256' },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? resources[0],
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          if (!resources.includes(resourceIndicator)) {
            throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          }
          return {
            scope: SCOPES,
            audience: resourceIndicator,
            accessTokenTTL: opts.ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? opts.ttl,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? opts.ttl,
    },
    // no cookies are ever set (no interactive flows), but keep the notice quiet
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  });
  // `openid` is always among oidc-provider's scopes, but these clients may not
  // request it; advertise only the scopes a client can actually obtain (MCP
  // clients fall back to the AS's scopes_supported when choosing a scope).
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'discovery' && ctx.body && typeof ctx.body === 'object') {
      ctx.body.scopes_supported = SCOPES.split(' ');
    }
  });
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
  handler = provider.callback();
}

// ---------------------------------------------------------------- /test/*
const stats = { jwks_requests: 0, token_requests: 0, discovery_requests: 0 };

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const SIGNING = {
  RS256: ['sha256', crypto.constants.RSA_PKCS1_PADDING],
  RS384: ['sha384', crypto.constants.RSA_PKCS1_PADDING],
  RS512: ['sha512', crypto.constants.RSA_PKCS1_PADDING],
  PS256: ['sha256', crypto.constants.RSA_PKCS1_PSS_PADDING],
  PS384: ['sha384', crypto.constants.RSA_PKCS1_PSS_PADDING],
  PS512: ['sha512', crypto.constants.RSA_PKCS1_PSS_PADDING],
};

function merge(defaults, overrides) {
  const out = { ...defaults };
  for (const [k, v] of Object.entries(overrides ?? {})) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

function mint(body) {
  const which = body.key ?? 'issuer';
  const key = { issuer: signingKey, stray: strayKey, previous: previousKey }[which];
  if (!key) throw new HttpError(400, `unknown key ${JSON.stringify(which)}${which === 'previous' ? ' (no rotation yet)' : ''}`);
  const now = Math.floor(Date.now() / 1000);
  const claims = merge({
    iss: issuer,
    aud: resources[0],
    sub: 'minted',
    client_id: 'agent-a',
    scope: 'mcp:execute',
    iat: now,
    exp: now + 300,
    jti: crypto.randomUUID(),
  }, body.claims);
  const header = merge({ alg: 'RS256', typ: 'at+jwt', kid: key.kid }, body.header);
  const input = `${b64url(header)}.${b64url(claims)}`;
  if (header.alg === 'none') return `${input}.`;
  const spec = SIGNING[header.alg];
  if (!spec) throw new HttpError(400, `unsupported alg ${JSON.stringify(header.alg)}`);
  const [hash, padding] = spec;
  const sig = crypto.sign(hash, Buffer.from(input), {
    key: key.privateKey,
    padding,
    ...(padding === crypto.constants.RSA_PKCS1_PSS_PADDING
      ? { saltLength: crypto.constants.RSA_PSS_SALTLEN_DIGEST }
      : {}),
  });
  return `${input}.${sig.toString('base64url')}`;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > 1 << 20) throw new HttpError(413, 'body too large');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    const v = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v;
  } catch (e) {
    throw new HttpError(400, `invalid JSON body: ${e.message}`);
  }
}

function send(res, status, body) {
  if (body === undefined) {
    res.writeHead(status, { 'cache-control': 'no-store' }).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(text);
}

function validResource(r) {
  if (typeof r !== 'string') return false;
  const u = URL.parse(r);
  return !!u && !r.includes('#');
}

async function testRoute(req, res, pathname) {
  if (pathname === '/test/stats' && req.method === 'GET') return send(res, 200, stats);
  if (req.method !== 'POST') throw new HttpError(405, 'use POST');
  const body = await readJson(req);
  switch (pathname) {
    case '/test/resource': {
      const list = body.resources ?? (body.resource !== undefined ? [body.resource] : undefined);
      if (!Array.isArray(list) || list.length === 0 || !list.every(validResource)) {
        throw new HttpError(400, 'expected {"resource": "<absolute URI without fragment>"} or {"resources": [...]}');
      }
      resources = [...list];
      return send(res, 204);
    }
    case '/test/mint':
      return send(res, 200, { token: mint(body) });
    case '/test/rotate': {
      previousKey = signingKey;
      signingKey = newRsaKey('issuer');
      keepPrevious = body.keep_previous === true;
      buildProvider();
      return send(res, 200, { kid: signingKey.kid, previous_kid: previousKey.kid, jwks_uri: `${issuer}/jwks` });
    }
    default:
      throw new HttpError(404, `no such test endpoint ${pathname}`);
  }
}

// -------------------------------------------------------------------- server
const server = http.createServer((req, res) => {
  const pathname = (req.url ?? '/').split('?')[0];
  if (pathname.startsWith('/test/')) {
    testRoute(req, res, pathname).catch((err) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) console.error('issuer.mjs test endpoint error:', err);
      if (!res.headersSent) send(res, status, { error: err.message });
    });
    return;
  }
  if (pathname === '/jwks') stats.jwks_requests++;
  else if (pathname === '/token') {
    stats.token_requests++;
    // Without a resource, oidc-provider would issue an opaque token: refuse instead.
    if (resources.length === 0) {
      send(res, 400, {
        error: 'invalid_target',
        error_description: 'issuer.mjs: no resource configured yet (POST /test/resource or --resource)',
      });
      return;
    }
  }
  else if (pathname.startsWith('/.well-known/')) stats.discovery_requests++;
  handler(req, res);
});
server.keepAliveTimeout = 1000;

server.on('error', (err) => fail(`cannot listen: ${err.message}`));
server.listen(opts.port, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  try {
    buildProvider();
  } catch (err) {
    fail(`oidc-provider configuration failed: ${err.stack ?? err}`);
  }
  process.stdout.write(`${JSON.stringify({
    issuer,
    jwks_uri: `${issuer}/jwks`,
    token_endpoint: `${issuer}/token`,
  })}\n`);
  if (oidcEntry) console.error(`issuer.mjs: oidc-provider from ${oidcEntry}; signing kid ${signingKey.kid}`);
});
