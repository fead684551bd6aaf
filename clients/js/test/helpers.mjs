// What every Node test of the client shares: the stack's URLs, signed-up clients, waiting on
// conditions with deadlines, the harness's mail and API controls, and TOTP codes.
import { createHmac, randomUUID } from "node:crypto";
import { createClient, memoryStore } from "../dist/index.js";

export const URL = process.env.LITEBASE_URL;
export const STABLE_URL = process.env.LITEBASE_STABLE_URL ?? URL;
const CONTROL = process.env.LITEBASE_CONTROL_URL;
if (!URL) throw new Error("LITEBASE_URL is not set: run these through tests/e2e/test_js_client.py");
export const PASSWORD = "correct horse battery staple";

const clients = [];

export function client(options = {}, url = URL) {
  const lb = createClient(url, { storage: memoryStore(), ...options });
  clients.push(lb);
  return lb;
}

export function closeAll() {
  for (const lb of clients.splice(0)) lb.close();
}

export function email(prefix = "js") {
  return `${prefix}-${randomUUID().slice(0, 8)}@example.com`;
}

export async function signedUp(options = {}, url = URL) {
  const lb = client(options, url);
  const address = email();
  await lb.auth.signUp(address, PASSWORD);
  return { lb, email: address };
}

/** A client that counts its refresh grants (the requests, as they leave). */
export function countingFetch() {
  const counter = { refreshes: 0, requests: 0 };
  counter.fetch = async (input, init = {}) => {
    counter.requests++;
    if (String(input).endsWith("/auth/token") && String(init.body).includes('"refresh_token"')) counter.refreshes++;
    return fetch(input, init);
  };
  return counter;
}

export async function waitUntil(condition, { timeout = 15_000, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export async function mailTo(to, subject) {
  const response = await fetch(`${CONTROL}/mail?to=${encodeURIComponent(to)}&subject=${encodeURIComponent(subject)}`);
  if (!response.ok) throw new Error(`no mail to ${to} about ${subject}`);
  return response.json();
}

/** The token of a mail's link to the app (APP_URL/verify?token=…, /reset-password?token=…). */
export function tokenIn(mail) {
  const link = /https?:\/\/\S+[?&]token=[^\s&]+/.exec(mail.text)?.[0];
  if (!link) throw new Error(`no link with a token in: ${mail.text}`);
  return new globalThis.URL(link).searchParams.get("token"); // URL here is the API's address
}

export async function api(action) {
  const response = await fetch(`${CONTROL}/api/${action}`, { method: "POST" });
  if (!response.ok) throw new Error(`api ${action}: ${response.status}`);
}

function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of text.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** RFC 6238: the code an authenticator app shows at `time`. */
export function totp(secret, time = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(time / 30_000)));
  const hash = createHmac("sha1", base32(secret)).update(counter).digest();
  const offset = hash[19] & 15;
  return String((hash.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

/** The OpenID provider on loopback that the API signs people in with (provider "mock"). */
export const OIDC = process.env.LITEBASE_OIDC_URL;

/** A person at the provider: their subject. */
export async function providerUser(claims) {
  const sub = `js-${randomUUID().slice(0, 8)}`;
  const answer = await fetch(`${OIDC}/users/${encodeURIComponent(sub)}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(claims),
  });
  if (answer.status !== 204) throw new Error(`the provider refused the user: ${answer.status}`);
  return sub;
}

/** The browser's trip: from the authorize URL (Litebase's or the provider's) through the
 * provider's form, as `sub`, and the Litebase callback; the URL it comes back to the app with. */
export async function throughProvider(url, sub) {
  let next = url;
  if (next.startsWith(URL)) {
    const leaving = await fetch(next, { redirect: "manual" });
    if (leaving.status !== 302) throw new Error(`authorize answered ${leaving.status}: ${await leaving.text()}`);
    next = leaving.headers.get("location");
  }
  const chosen = await fetch(next, { method: "POST", body: new URLSearchParams({ sub }), redirect: "manual" });
  if (chosen.status !== 302) throw new Error(`the provider answered ${chosen.status}`);
  const callback = new globalThis.URL(chosen.headers.get("location"));
  const back = await fetch(`${URL}${callback.pathname}${callback.search}`, { redirect: "manual" });
  if (back.status !== 302) throw new Error(`the callback answered ${back.status}: ${await back.text()}`);
  return back.headers.get("location");
}
