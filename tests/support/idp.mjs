// A real OAuth 2.0 / OIDC authorization server for the tests: oauth2-mock-server (npm), with the few
// hooks the tests need. It signs real RS256 JWTs with a key published at /jwks, runs the
// authorization-code (+ PKCE S256 check), refresh-token and client-credentials grants, and:
//
// - checks client authentication (HTTP Basic or client_id/client_secret in the body) against the
//   clients given with --client id:secret, answering 401 invalid_client otherwise;
// - "logs in" as the user named by the `user` query parameter of /authorize (the test plays the
//   person at the browser), so the code, its tokens and their refreshes carry `sub` = that user;
// - lets a test ask /token for extra or overriding claims (`claims`, JSON) and a lifetime
//   (`expires_in`), to mint expired / wrong-audience / wrong-issuer tokens signed by the real key;
// - GET /test/log lists every token request (grant, client, user, PKCE verifier present or not);
//   POST /test/settings {"access_ttl": N} sets the lifetime of access tokens from user grants.
//
// Usage: node idp.mjs --port 0 [--client id:secret ...]   -> prints {"issuer": ..., "port": ...}
import { OAuth2Server } from "oauth2-mock-server";

const args = process.argv.slice(2);
let port = 0;
const clients = new Map();
for (let i = 0; i < args.length; i += 2) {
  if (args[i] === "--port") port = Number(args[i + 1]);
  else if (args[i] === "--client") {
    const [id, secret] = args[i + 1].split(":");
    clients.set(id, secret);
  } else {
    console.error(`idp.mjs: unknown argument ${args[i]}`);
    process.exit(2);
  }
}

const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");
const service = server.service;
const codeUser = new Map();
const refreshUser = new Map();
const log = [];
let accessTtl = 3600;

function clientOf(req) {
  const auth = req.headers.authorization || "";
  if (auth.startsWith("Basic ")) {
    const [id, ...rest] = Buffer.from(auth.slice(6), "base64").toString().split(":");
    return { id: decodeURIComponent(id), secret: decodeURIComponent(rest.join(":")) };
  }
  return { id: req.body.client_id, secret: req.body.client_secret };
}

function userOf(req) {
  const body = req.body;
  if (body.grant_type === "authorization_code") return codeUser.get(body.code);
  if (body.grant_type === "refresh_token") return refreshUser.get(body.refresh_token);
  if (body.grant_type === "password") return body.username;
  return undefined;
}

service.on("beforeAuthorizeRedirect", (redirect, req) => {
  const url = new URL(req.url, "http://idp");
  const user = url.searchParams.get("user") || "johndoe";
  const code = redirect.url.searchParams.get("code");
  if (code) codeUser.set(code, user);
});

service.on("beforeTokenSigning", (token, req) => {
  const body = req.body;
  const user = userOf(req);
  if (user) token.payload.sub = user;
  const client = clientOf(req);
  if (client.id) token.payload.client_id = client.id;
  const userGrant = ["authorization_code", "refresh_token"].includes(body.grant_type);
  const ttl = body.expires_in !== undefined ? Number(body.expires_in) : userGrant ? accessTtl : undefined;
  if (ttl !== undefined) token.payload.exp = Math.floor(Date.now() / 1000) + ttl;
  if (body.claims) Object.assign(token.payload, JSON.parse(body.claims));
});

service.on("beforeResponse", (response, req) => {
  const body = req.body;
  const client = clientOf(req);
  const user = userOf(req);
  log.push({
    grant_type: body.grant_type,
    client_id: client.id ?? null,
    user: user ?? null,
    code_verifier: "code_verifier" in body,
    resource: body.resource ?? null,
  });
  if (clients.size && body.grant_type !== "password" && clients.get(client.id) !== client.secret) {
    response.statusCode = 401;
    response.body = { error: "invalid_client", error_description: "unknown client or wrong secret" };
    return;
  }
  if (body.grant_type === "refresh_token" && !refreshUser.has(body.refresh_token)) {
    response.statusCode = 400;
    response.body = { error: "invalid_grant", error_description: "unknown refresh token" };
    return;
  }
  const userGrant = ["authorization_code", "refresh_token"].includes(body.grant_type);
  if (userGrant) response.body.expires_in = accessTtl;
  if (body.expires_in !== undefined) response.body.expires_in = Number(body.expires_in);
  if (response.body.refresh_token && user) refreshUser.set(response.body.refresh_token, user);
});

service.addRoute("GET", "/test/log", (req, res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(log));
});

service.addRoute("POST", "/test/settings", (req, res) => {
  if (req.body.access_ttl !== undefined) accessTtl = Number(req.body.access_ttl);
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ access_ttl: accessTtl }));
});

await server.start(port, "127.0.0.1");
const address = server.address();
server.issuer.url = `http://127.0.0.1:${address.port}`;
console.log(JSON.stringify({ issuer: server.issuer.url, port: address.port }));

function stop() {
  server.stop().then(() => process.exit(0));
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
