import assert from "node:assert/strict";
import { after, test } from "node:test";
import { LitebaseError, memoryStore } from "../dist/index.js";
import { client, closeAll, email, providerUser, signedUp, throughProvider } from "./helpers.mjs";

after(closeAll);

const BACK = "https://app.example.com/auth/done";

test("the providers the server offers", async () => {
  const providers = await client().auth.listOAuthProviders();
  assert.deepEqual(providers, [{ name: "mock", display_name: "Mock", kind: "oidc" }]);
});

test("sign in with a provider through the redirects; the next sign-in is the same account", async () => {
  const address = email("oidc");
  const sub = await providerUser({ email: address, email_verified: true });
  const verifiers = memoryStore();
  const lb = client({ verifierStorage: verifiers });
  const { url } = await lb.auth.signInWithOAuth("mock", { redirectTo: BACK, skipBrowserRedirect: true });
  const query = new URL(url).searchParams;
  assert.equal(query.get("redirect_to"), BACK);
  assert.equal(query.get("code_challenge_method"), "S256");
  assert.match(query.get("code_challenge"), /^[A-Za-z0-9_-]{43}$/);
  const returned = await throughProvider(url, sub);
  assert.ok(returned.startsWith(`${BACK}?code=lbo_`), returned);
  const session = await lb.auth.handleOAuthRedirect(returned);
  assert.equal(session.user.email, address);
  assert.equal(session.user.email_verified, true);
  assert.equal((await lb.auth.getUser()).id, session.user.id);
  assert.equal(verifiers.getItem(`litebase.session:${lb.url}:pkce`), null, "the verifier is spent");

  const again = client();
  const trip = await again.auth.signInWithOAuth("mock", { redirectTo: BACK, skipBrowserRedirect: true });
  const code = new URL(await throughProvider(trip.url, sub)).searchParams.get("code");
  assert.equal((await again.auth.exchangeOAuthCode(code)).user.id, session.user.id);
  // The only way in is the provider: it cannot be unlinked.
  const [identity] = (await again.auth.listIdentities()).items;
  assert.equal(identity.provider, "mock");
  const refused = await again.auth.unlinkIdentity(identity.id).catch((e) => e);
  assert.equal(refused.status, 409);
  assert.equal(refused.code, "last_sign_in_method");
});

test("a code without this tab's verifier, or a provider's refusal, is an error", async () => {
  const sub = await providerUser({ email: email("oidc"), email_verified: true });
  const started = client();
  const { url } = await started.auth.signInWithOAuth("mock", { redirectTo: BACK, skipBrowserRedirect: true });
  const returned = await throughProvider(url, sub);
  const elsewhere = await client().auth.handleOAuthRedirect(returned).catch((e) => e);
  assert.ok(elsewhere instanceof LitebaseError);
  assert.equal(elsewhere.code, "no_code_verifier");
  const forged = await client().auth.exchangeOAuthCode(new URL(returned).searchParams.get("code"), "x".repeat(43)).catch((e) => e);
  assert.equal(forged.status, 401);
  assert.equal(forged.code, "invalid_grant");
  const denied = await client().auth.handleOAuthRedirect(`${BACK}?error=access_denied&error_description=cancelled`).catch((e) => e);
  assert.equal(denied.code, "access_denied");
  assert.equal(await client().auth.handleOAuthRedirect(BACK), null);
});

test("link a provider to a signed-in account, then unlink it", async () => {
  const { lb } = await signedUp();
  const me = await lb.auth.getUser();
  const sub = await providerUser({ email: email("link"), email_verified: false });
  const { url } = await lb.auth.linkIdentity("mock", { redirectTo: BACK, skipBrowserRedirect: true });
  const linked = await lb.auth.handleOAuthRedirect(await throughProvider(url, sub));
  assert.equal(linked.user.id, me.id);
  const { items } = await lb.auth.listIdentities();
  assert.deepEqual(items.map((i) => [i.provider, i.email_verified]), [["mock", false]]);
  await lb.auth.unlinkIdentity(items[0].id); // a password is left
  assert.deepEqual((await lb.auth.listIdentities()).items, []);
});
