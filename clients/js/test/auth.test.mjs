import assert from "node:assert/strict";
import { after, test } from "node:test";
import { LitebaseError, MfaRequiredError, createClient, fromBase64url, memoryStore, toBase64url } from "../dist/index.js";
import { PASSWORD, URL, client, closeAll, countingFetch, email, mailTo, signedUp, tokenIn, totp, waitUntil } from "./helpers.mjs";

after(closeAll);

test("sign up, then a client on the same storage is still signed in", async () => {
  const storage = memoryStore();
  const first = client({ storage });
  const events = [];
  first.auth.onAuthStateChange((event) => events.push(event));
  const address = email();
  const session = await first.auth.signUp(address, PASSWORD, "Ada");
  assert.equal(session.user.email, address);
  await waitUntil(() => events.includes("SIGNED_IN"), { what: "SIGNED_IN" });
  const reloaded = client({ storage });
  assert.equal(reloaded.auth.user?.email, address);
  assert.equal((await reloaded.auth.getUser()).name, "Ada");
});

test("password sign-in, and refusals are typed errors with code and field errors", async () => {
  const { email: address } = await signedUp();
  const lb = client();
  await lb.auth.signInWithPassword(address, PASSWORD);
  assert.equal((await lb.auth.getUser()).email, address);
  const wrong = await client().auth.signInWithPassword(address, "not the password").catch((e) => e);
  assert.ok(wrong instanceof LitebaseError);
  assert.equal(wrong.status, 401);
  assert.equal(wrong.code, "invalid_credentials");
  const short = await client().auth.signUp(email(), "short").catch((e) => e);
  assert.equal(short.status, 422);
  assert.equal(short.errors[0].field, "password");
  assert.ok(short.fieldError("password"));
  assert.ok(short.requestId, "X-Request-Id is read from the answer");
});

test("sign in with a mailed code", async () => {
  const { email: address } = await signedUp();
  const lb = client();
  await lb.auth.sendSignInCode(address);
  const mail = await mailTo(address, "sign-in code");
  const code = mail.subject.split(" ").at(-1);
  await lb.auth.signInWithCode(address, code);
  assert.equal(lb.auth.user.email, address);
});

test("two-factor sign-in: the TOTP step after the password", async () => {
  const { lb, email: address } = await signedUp();
  const { secret } = await lb.auth.setupTotp(PASSWORD);
  const enabled = await lb.auth.enableTotp(totp(secret));
  assert.equal(enabled.totp_enabled, true);
  const second = client();
  const step = await second.auth.signInWithPassword(address, PASSWORD).catch((e) => e);
  assert.ok(step instanceof MfaRequiredError, String(step));
  assert.ok(step.mfaToken.startsWith("lbm_"));
  assert.deepEqual(step.methods, ["totp"]); // no passkey: the app's code is the only second step
  await second.auth.verifyTotp(step.mfaToken, totp(secret, Date.now() + 30_000)); // each code works once
  assert.equal((await second.auth.getUser()).email, address);
});

test("two-factor recovery codes: shown once, one signs in, counted, made anew", async () => {
  const { lb, email: address } = await signedUp();
  const { secret } = await lb.auth.setupTotp(PASSWORD);
  const enabled = await lb.auth.enableTotp(totp(secret));
  assert.equal(enabled.recovery_codes.length, 10);
  assert.equal(lb.auth.user.recovery_codes, undefined, "the codes are not kept with the session");
  const phoneless = client();
  const step = await phoneless.auth.signInWithPassword(address, PASSWORD).catch((e) => e);
  assert.ok(step instanceof MfaRequiredError, String(step));
  await phoneless.auth.verifyRecoveryCode(step.mfaToken, enabled.recovery_codes[0]);
  assert.equal(phoneless.auth.user.email, address);
  await mailTo(address, "A recovery code was used");
  assert.deepEqual(await phoneless.auth.getTwoFactorStatus(), { totp_enabled: true, recovery_codes_left: 9 });
  const fresh = await phoneless.auth.regenerateRecoveryCodes({ recovery_code: enabled.recovery_codes[1] });
  assert.equal(fresh.length, 10);
  await phoneless.auth.disableTotp({ recovery_code: fresh[0] });
  assert.deepEqual(await lb.auth.getTwoFactorStatus(), { totp_enabled: false, recovery_codes_left: 0 });
});

test("anonymous: sign in with nothing, keep the note after keeping the account", async () => {
  const lb = client();
  const guest = await lb.auth.signInAnonymously();
  assert.equal(guest.user.email, null);
  assert.equal(guest.user.is_anonymous, true);
  const note = await lb.collection("notes").create({ title: "made as a guest" });
  const address = email("guest");
  await lb.auth.convertAccount(address, PASSWORD);
  const token = tokenIn(await mailTo(address, "Confirm your new email address"));
  const user = await lb.auth.confirmEmail(token);
  assert.equal(user.email, address);
  assert.equal(lb.auth.user.is_anonymous, false, "the session was refreshed");
  assert.equal((await lb.collection("notes").get(note.id)).title, "made as a guest");
  const again = client();
  await again.auth.signInWithPassword(address, PASSWORD);
  assert.equal(again.auth.user.id, user.id);
});

test("passkeys: base64url both ways, and a runtime without WebAuthn is a typed refusal", async () => {
  const bytes = new Uint8Array([0, 1, 62, 63, 254, 255, 128]);
  const text = toBase64url(bytes);
  assert.equal(text, "AAE-P_7_gA"); // unpadded, - and _ for + and /
  assert.deepEqual(new Uint8Array(fromBase64url(text)), bytes);
  assert.equal(toBase64url(bytes.subarray(2, 4)), "Pj8");
  // The options come from the server; Node has no navigator.credentials to answer them.
  const refused = await client().auth.signInWithPasskey().catch((e) => e);
  assert.ok(refused instanceof LitebaseError, String(refused));
  assert.equal(refused.code, "passkeys_unsupported");
  const { lb } = await signedUp();
  assert.deepEqual((await lb.auth.listPasskeys()).items, []);
});

// A signed-up session, changed in its storage, read back by a new client that counts fetches.
async function reloadedWith(change) {
  const storage = memoryStore();
  const { lb } = await signedUp({ storage });
  const key = `litebase.session:${URL}`;
  const stored = JSON.parse(storage.getItem(key));
  storage.setItem(key, JSON.stringify({ ...stored, ...change(stored) }));
  lb.close();
  const counter = countingFetch();
  return { stored, counter, reloaded: client({ storage, fetch: counter.fetch }) };
}

test("20 parallel calls with an expired token make exactly one refresh", async () => {
  const { stored, counter, reloaded } = await reloadedWith(() => ({ expires_at: Date.now() - 1000 }));
  const users = await Promise.all(Array.from({ length: 20 }, () => reloaded.auth.getUser()));
  assert.equal(users.length, 20);
  assert.equal(counter.refreshes, 1);
  assert.notEqual(reloaded.auth.session.refresh_token, stored.refresh_token);
});

test("20 parallel calls refused with 401 share one refresh, then all succeed", async () => {
  const { counter, reloaded } = await reloadedWith((stored) => ({
    access_token: `${stored.access_token}x`,
  }));
  const users = await Promise.all(Array.from({ length: 20 }, () => reloaded.auth.getUser()));
  assert.equal(users.length, 20);
  assert.equal(counter.refreshes, 1);
});

test("two tabs without Web Locks refreshing at once keep one session (the rotation grace)", async () => {
  const storage = memoryStore();
  const { lb } = await signedUp({ storage });
  const other = client({ storage });
  const [a, b] = await Promise.all([lb.auth.refreshSession(), other.auth.refreshSession()]);
  assert.equal(a.refresh_token, b.refresh_token);
  const sessions = await other.auth.listSessions();
  assert.equal(sessions.items.length, 1);
  await lb.auth.refreshSession(); // the family is alive
  assert.ok(await other.auth.getUser());
});

test("sessions: list, revoke another device; that device is signed out", async () => {
  const { lb, email: address } = await signedUp();
  const phone = client();
  await phone.auth.signInWithPassword(address, PASSWORD);
  const events = [];
  phone.auth.onAuthStateChange((event) => events.push(event));
  const sessions = await lb.auth.listSessions();
  assert.equal(sessions.items.length, 2);
  const theirs = sessions.items.find((s) => !s.current);
  await lb.auth.revokeSession(theirs.id);
  const refused = await phone.auth.getUser().catch((e) => e);
  assert.equal(refused.status, 401);
  assert.equal(phone.auth.session, null);
  assert.ok(events.includes("SIGNED_OUT"));
});

test("sign out ends the session on the server and here", async () => {
  const storage = memoryStore();
  const { lb } = await signedUp({ storage });
  const refresh = lb.auth.session.refresh_token;
  await lb.auth.signOut();
  assert.equal(lb.auth.session, null);
  assert.equal(storage.getItem(`litebase.session:${URL}`), null);
  const replay = await fetch(`${URL}/auth/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ grant_type: "refresh_token", refresh_token: refresh }),
  });
  assert.equal(replay.status, 401);
});

test("API keys: create, act with one, list, revoke", async () => {
  const { lb } = await signedUp();
  const { key, api_key } = await lb.auth.createApiKey({ name: "ci", scopes: ["read"] });
  const bot = createClient(URL, { apiKey: key, storage: memoryStore() });
  assert.equal((await bot.auth.getUser()).id, lb.auth.user.id);
  const keys = await lb.auth.listApiKeys();
  assert.deepEqual(keys.items.map((k) => k.id), [api_key.id]);
  const denied = await bot.collection("notes").create({ title: "no" }).catch((e) => e);
  assert.equal(denied.status, 403);
  assert.equal(denied.code, "insufficient_scope");
  await lb.auth.revokeApiKey(api_key.id);
  assert.equal((await bot.auth.getUser().catch((e) => e)).status, 401);
  bot.close();
});

test("orgs: create, switch org (the token's org changes), members, invite", async () => {
  const { lb } = await signedUp();
  const acme = await lb.orgs.create("Acme");
  const beta = await lb.orgs.create("Beta");
  const orgOf = (session) => JSON.parse(Buffer.from(session.access_token.split(".")[1], "base64url")).org;
  assert.equal(orgOf(await lb.orgs.switchTo(beta.id)), beta.id);
  assert.equal(orgOf(await lb.auth.switchOrg(acme.id)), acme.id);
  const mine = await lb.orgs.list();
  assert.deepEqual(mine.items.map((o) => o.name).sort(), ["Acme", "Beta"]);
  assert.equal((await lb.orgs.get(acme.id)).name, "Acme");
  const members = await lb.orgs.members(acme.id);
  assert.equal(members.items.length, 1);
  const invitee = email("invitee");
  const invitation = await lb.orgs.invite(acme.id, invitee);
  assert.equal(invitation.email, invitee);
  const notMine = await lb.orgs.get("00000000-0000-7000-8000-000000000000").catch((e) => e);
  assert.equal(notMine.status, 404);
});


test("the account: name, password change, verification, reset by mail, then deletion", async () => {
  const { lb, email: address } = await signedUp();
  const events = [];
  lb.auth.onAuthStateChange((event) => events.push(event));
  assert.equal((await lb.auth.updateUser({ name: "Grace" })).name, "Grace");
  assert.ok(events.includes("USER_UPDATED"));
  await lb.auth.updateUser({ current_password: PASSWORD, new_password: `${PASSWORD} 2` });
  const atSignUp = tokenIn(await mailTo(address, "Confirm your email address"));
  await lb.auth.requestVerification(); // a new token, which replaces the sign-up one
  const fresh = await waitUntil(async () => {
    const token = tokenIn(await mailTo(address, "Confirm your email address"));
    return token !== atSignUp && token;
  }, { what: "the second verification mail" });
  await lb.auth.verifyEmail(fresh);
  assert.equal((await lb.auth.getUser()).email_verified, true);
  await client().auth.forgotPassword(address);
  const reset = await mailTo(address, "Reset your password");
  await client().auth.resetPassword(tokenIn(reset), `${PASSWORD} 3`);
  const again = client();
  await again.auth.signInWithPassword(address, `${PASSWORD} 3`);
  const wrong = await again.auth.deleteAccount("not it").catch((e) => e);
  assert.equal(wrong.status, 422);
  assert.equal(wrong.errors[0].field, "password");
  await again.auth.deleteAccount(`${PASSWORD} 3`);
  assert.equal(again.auth.session, null);
  const gone = await client().auth.signInWithPassword(address, `${PASSWORD} 3`).catch((e) => e);
  assert.equal(gone.code, "invalid_credentials");
});

test("two-factor sign-in can be turned off again", async () => {
  const { lb, email: address } = await signedUp();
  const { secret } = await lb.auth.setupTotp(PASSWORD);
  await lb.auth.enableTotp(totp(secret));
  await lb.auth.disableTotp(totp(secret, Date.now() + 30_000));
  const plain = client();
  await plain.auth.signInWithPassword(address, PASSWORD); // no MfaRequiredError now
  assert.equal(plain.auth.user.totp_enabled, false);
});

test("orgs administered: rename, roles, invitations revoked, members removed, deleted", async () => {
  const { lb: owner } = await signedUp();
  const { lb: member, email: memberEmail } = await signedUp();
  const org = await owner.orgs.create("Admin org");
  assert.equal((await owner.orgs.update(org.id, { name: "Admin org 2" })).name, "Admin org 2");
  await owner.orgs.invite(org.id, memberEmail);
  const mail = await mailTo(memberEmail, "invited to Admin org 2");
  await member.orgs.acceptInvitation(tokenIn(mail));
  const stray = await owner.orgs.invite(org.id, email("stray"));
  const pending = await owner.orgs.invitations(org.id);
  assert.ok(pending.items.some((i) => i.id === stray.id));
  await owner.orgs.revokeInvitation(org.id, stray.id);
  const memberId = member.auth.user.id;
  assert.equal((await owner.orgs.setRole(org.id, memberId, "admin")).role, "admin");
  await owner.orgs.removeMember(org.id, memberId);
  assert.deepEqual((await owner.orgs.members(org.id)).items.map((m) => m.user_id), [owner.auth.user.id]);
  await owner.orgs.delete(org.id);
  assert.equal((await owner.orgs.get(org.id).catch((e) => e)).status, 404);
});
