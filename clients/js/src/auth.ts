/** Sign-in, sessions that persist and refresh themselves (one refresh across every tab), API
 * keys and orgs. */

import { LitebaseError } from "./errors.js";
import { type Credentials, type Http, type Page, toPage } from "./http.js";
import { createPasskey, type Passkey, type PasskeyOptions, usePasskey } from "./passkeys.js";
import type { SessionStore } from "./storage.js";

export interface User {
  id: string;
  /** null for an anonymous user until it confirms an address (`convertAccount`). */
  email: string | null;
  name: string | null;
  role: "user" | "admin";
  email_verified: boolean;
  totp_enabled?: boolean;
  /** Made by `signInAnonymously` and not yet made permanent (`@auth.anonymous` in rules). */
  is_anonymous?: boolean;
  /** The language of the user's mails (a BCP 47 tag such as "de"); null: English. */
  locale?: string | null;
  created_at: string;
  [extra: string]: unknown;
}

/** What `enableTotp` answers: the user, and its ten recovery codes, shown this once. */
export interface TotpEnabled extends User {
  recovery_codes: string[];
}

/** Proof of the second factor: the app's current code, or one unused recovery code. */
export type SecondFactor = { code: string } | { recovery_code: string };

export interface TwoFactorStatus {
  totp_enabled: boolean;
  recovery_codes_left: number;
}

/** What the token endpoint answers. */
export interface TokenResponse {
  access_token: string;
  refresh_token: string;
  token_type: "bearer";
  expires_in: number;
  user: User;
}

/** A signed-in session as the client keeps it: `expires_at` is milliseconds since the epoch, on
 * this machine's clock (measured from when the answer came, so a skewed clock does no harm). */
export interface Session extends TokenResponse {
  expires_at: number;
}

export type AuthEvent = "INITIAL_SESSION" | "SIGNED_IN" | "SIGNED_OUT" | "TOKEN_REFRESHED" | "USER_UPDATED";
export type AuthListener = (event: AuthEvent, session: Session | null) => void;

export interface SessionInfo {
  id: string;
  current: boolean;
  created_at: string;
  [extra: string]: unknown;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  [extra: string]: unknown;
}

export interface NewApiKey {
  name: string;
  expires_at?: string;
  scopes?: ("read" | "write" | "keys")[];
  collections?: string[];
  service?: boolean;
  org_id?: string;
}

export interface Org {
  id: string;
  name: string;
  role?: "owner" | "admin" | "member";
  [extra: string]: unknown;
}

export interface Member {
  user_id: string;
  role: "owner" | "admin" | "member";
  [extra: string]: unknown;
}

export interface Invitation {
  id: string;
  email: string;
  role: string;
  [extra: string]: unknown;
}

interface LockManager {
  request<T>(name: string, callback: (lock: unknown) => Promise<T>): Promise<T>;
  request<T>(name: string, options: { ifAvailable: boolean }, callback: (lock: unknown) => Promise<T>): Promise<T>;
}

/** How long a tab that waited for another tab's refresh waits for its result to reach it (the
 * BroadcastChannel message; localStorage reaches other tabs' processes later still) before it
 * refreshes itself. Past it, the server's rotation grace answers the old token with the same pair. */
const NEWS_WAIT_MS = 2_000;

const BAD_GRANT = new Set(["invalid_grant", "session_ended", "invalid_token"]);

/** A sign-in provider the server offers (`GET /auth/oauth/providers`). */
export interface OAuthProvider {
  name: string;
  display_name: string;
  kind: "oidc" | "github" | "discord";
}

/** A provider account linked to mine. */
export interface Identity {
  id: string;
  provider: string;
  email: string | null;
  email_verified: boolean;
  created_at: string;
}

export interface OAuthOptions {
  /** Where the browser comes back to: must be in the server's AUTH_REDIRECT_URLS. */
  redirectTo: string;
  /** Only make and return the URL; do not send the browser there (default: go, in a browser). */
  skipBrowserRedirect?: boolean;
}

export interface AuthOptions {
  storage: SessionStore;
  /** Where the PKCE verifier waits while the browser is at the provider: the tab's
   * sessionStorage in a browser (it survives the trip, and no other tab sees it). */
  verifierStorage: SessionStore;
  storageKey: string;
  /** Share refreshes and sign-ins with other tabs (Web Locks + BroadcastChannel): on when the
   * store is the browser's localStorage, which tabs share. */
  crossTab: boolean;
  /** Refresh in the background before the access token expires (default true). */
  autoRefresh: boolean;
}

export class Auth implements Credentials {
  private current: Session | null = null;
  private listeners = new Set<AuthListener>();
  private inflight: Promise<Session> | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private channel: BroadcastChannel | null = null;
  private waiters = new Set<() => void>();
  /** An API key, when the client was made with one: it is sent instead of a session. */
  apiKey: string | null = null;

  constructor(
    private readonly http: Http,
    private readonly options: AuthOptions,
  ) {
    this.current = this.readStored();
    if (options.crossTab && typeof BroadcastChannel === "function") {
      this.channel = new BroadcastChannel(`litebase:${options.storageKey}`);
      this.channel.onmessage = (message: MessageEvent) => this.heard(message.data);
      (this.channel as { unref?: () => void }).unref?.();
    }
    this.schedule();
  }

  /** The session now (null when signed out). */
  get session(): Session | null {
    return this.current;
  }

  get user(): User | null {
    return this.current?.user ?? null;
  }

  /** Called on sign-in, sign-out, each refresh (here or in another tab) and user changes;
   * at once with the current state. Returns the function that stops it. */
  onAuthStateChange(listener: AuthListener): () => void {
    this.listeners.add(listener);
    queueMicrotask(() => this.listeners.has(listener) && listener("INITIAL_SESSION", this.current));
    return () => void this.listeners.delete(listener);
  }

  // --- signing in -----------------------------------------------------------------------------

  async signUp(email: string, password: string, name?: string): Promise<Session> {
    const body = { email, password, ...(name ? { name } : {}) };
    return this.keep(await this.http.json<TokenResponse>("POST", "/auth/signup", { body, auth: false }), "SIGNED_IN");
  }

  /** Throws `MfaRequiredError` (with `mfaToken`) when two-factor sign-in is on. */
  async signInWithPassword(email: string, password: string, orgId?: string): Promise<Session> {
    return this.grant({ grant_type: "password", email, password, ...(orgId ? { org_id: orgId } : {}) });
  }

  /** Mail a one-time sign-in code (the server answers the same whether the address exists). */
  async sendSignInCode(email: string): Promise<void> {
    await this.http.json("POST", "/auth/otp", { body: { email }, auth: false });
  }

  async signInWithCode(email: string, code: string, orgId?: string): Promise<Session> {
    return this.grant({ grant_type: "otp", email, code, ...(orgId ? { org_id: orgId } : {}) });
  }

  /** The second step of two-factor sign-in: the `mfaToken` of the `MfaRequiredError` and the
   * authenticator app's current code. */
  async verifyTotp(mfaToken: string, code: string): Promise<Session> {
    return this.grant({ grant_type: "mfa", mfa_token: mfaToken, code });
  }

  /** The second step of two-factor sign-in with one of the account's recovery codes instead of
   * the app's code (a lost phone): each works once, and the account is mailed about it. */
  async verifyRecoveryCode(mfaToken: string, recoveryCode: string): Promise<Session> {
    return this.grant({ grant_type: "mfa", mfa_token: mfaToken, recovery_code: recoveryCode });
  }

  /** Sign in with a passkey and nothing else: the browser offers the person the passkeys they
   * have for this site. Throws the browser's `NotAllowedError` if they cancel. */
  async signInWithPasskey(orgId?: string): Promise<Session> {
    const options = await this.http.json<PasskeyOptions>("POST", "/auth/passkeys/sign-in/options", { body: {}, auth: false });
    return this.grant({ grant_type: "passkey", credential: await usePasskey(options), ...(orgId ? { org_id: orgId } : {}) });
  }

  /** The second step of two-factor sign-in with a passkey instead of the app's code (when the
   * `MfaRequiredError`'s `methods` include `"passkey"`). */
  async verifyPasskey(mfaToken: string): Promise<Session> {
    const body = { mfa_token: mfaToken };
    const options = await this.http.json<PasskeyOptions>("POST", "/auth/passkeys/sign-in/options", { body, auth: false });
    return this.grant({ grant_type: "mfa", mfa_token: mfaToken, credential: await usePasskey(options) });
  }

  /** Make a passkey for the signed-in account on this device (or a phone, a security key). */
  async registerPasskey(name?: string): Promise<Passkey> {
    const options = await this.http.json<PasskeyOptions>("POST", "/auth/passkeys/register/options");
    const body = { credential: await createPasskey(options), ...(name ? { name } : {}) };
    return this.http.json<Passkey>("POST", "/auth/passkeys", { body });
  }

  async listPasskeys(): Promise<Page<Passkey>> {
    return toPage(await this.http.json("GET", "/auth/passkeys"));
  }

  async renamePasskey(id: string, name: string): Promise<Passkey> {
    return this.http.json<Passkey>("PATCH", `/auth/passkeys/${id}`, { body: { name } });
  }

  /** Refused (409 `last_sign_in_method`) when it is the account's last way to sign in. */
  async removePasskey(id: string): Promise<void> {
    await this.http.json("DELETE", `/auth/passkeys/${id}`);
  }

  /** Start two-factor sign-in: scan `otpauth_uri`, then `enableTotp(code)`. */
  async setupTotp(password: string): Promise<{ secret: string; otpauth_uri: string }> {
    return this.http.json("POST", "/auth/mfa/totp", { body: { password } });
  }

  /** Two-factor sign-in on; the answer's `recovery_codes` are shown this once: have the user
   * keep them. */
  async enableTotp(code: string): Promise<TotpEnabled> {
    const enabled = await this.http.json<TotpEnabled>("POST", "/auth/mfa/totp/enable", { body: { code } });
    const { recovery_codes: _codes, ...user } = enabled;
    this.userChanged(user);
    return enabled;
  }

  /** Two-factor sign-in off: the app's code (a string), or `{ recovery_code }`. */
  async disableTotp(proof: string | SecondFactor): Promise<void> {
    await this.http.json("DELETE", "/auth/mfa/totp", { body: typeof proof === "string" ? { code: proof } : proof });
  }

  /** Ten new recovery codes for the old ones (which stop working), shown this once. */
  async regenerateRecoveryCodes(proof: SecondFactor): Promise<string[]> {
    const answer = await this.http.json<{ recovery_codes: string[] }>("POST", "/auth/mfa/recovery-codes", { body: proof });
    return answer.recovery_codes;
  }

  /** Whether two-factor sign-in is on, and how many recovery codes are left. */
  async getTwoFactorStatus(): Promise<TwoFactorStatus> {
    return this.http.json("GET", "/auth/mfa");
  }

  /** Sign in as a new anonymous user (when the server allows it: `AUTH_ANONYMOUS_ENABLED`). What
   * it makes stays its own when it later keeps the account (`convertAccount`). */
  async signInAnonymously(): Promise<Session> {
    return this.grant({ grant_type: "anonymous" });
  }

  /** Keep the signed-in anonymous account: the address gets a token; `confirmEmail(token)` sets
   * the email and password and makes the account permanent, its records kept. */
  async convertAccount(email: string, password: string, name?: string): Promise<void> {
    await this.http.json("POST", "/auth/convert", { body: { email, password, ...(name ? { name } : {}) } });
  }

  /** Confirm an address with the mailed token (a new email, or a converted anonymous account's).
   * When it is this session's account, the session is refreshed so its token says so. */
  async confirmEmail(token: string): Promise<User> {
    const user = await this.http.json<User>("POST", "/auth/email/confirm", { body: { token }, auth: false });
    if (this.current?.user.id === user.id) await this.refreshSession();
    return user;
  }

  /** Use a session obtained elsewhere (a server render, a test). */
  async setSession(tokens: TokenResponse): Promise<Session> {
    return this.keep(tokens, "SIGNED_IN");
  }

  /** Sign this device out (the session's refresh family is revoked), then forget it here and in
   * every tab. */
  async signOut(): Promise<void> {
    try {
      if (this.current) await this.http.json("POST", "/auth/logout");
    } catch (error) {
      if (!(error instanceof LitebaseError) || error.status !== 401) throw error;
    } finally {
      this.forget(true);
    }
  }

  // --- the user ---------------------------------------------------------------------------------

  async getUser(): Promise<User> {
    const user = await this.http.json<User>("GET", "/auth/me");
    this.userChanged(user);
    return user;
  }

  async updateUser(changes: { name?: string; locale?: string; current_password?: string; new_password?: string }): Promise<User> {
    const user = await this.http.json<User>("PATCH", "/auth/me", { body: changes });
    this.userChanged(user);
    return user;
  }

  /** The password, except for an anonymous account that has none. */
  async deleteAccount(password?: string): Promise<void> {
    await this.http.json("DELETE", "/auth/me", { body: password === undefined ? {} : { password } });
    this.forget(true);
  }

  async requestVerification(): Promise<void> {
    await this.http.json("POST", "/auth/verify", { body: {} });
  }

  async verifyEmail(token: string): Promise<void> {
    await this.http.json("POST", "/auth/verify", { body: { token } });
  }

  async forgotPassword(email: string): Promise<void> {
    await this.http.json("POST", "/auth/password/forgot", { body: { email }, auth: false });
  }

  async resetPassword(token: string, newPassword: string): Promise<void> {
    await this.http.json("POST", "/auth/password/reset", { body: { token, new_password: newPassword }, auth: false });
  }

  // --- sessions and keys --------------------------------------------------------------------------

  async listSessions(): Promise<Page<SessionInfo>> {
    return toPage(await this.http.json("GET", "/auth/sessions"));
  }

  async revokeSession(id: string): Promise<void> {
    await this.http.json("DELETE", `/auth/sessions/${id}`);
  }

  async listApiKeys(): Promise<Page<ApiKey>> {
    return toPage(await this.http.json("GET", "/auth/api-keys"));
  }

  /** The `key` is shown this once. */
  async createApiKey(key: NewApiKey): Promise<{ key: string; api_key: ApiKey }> {
    return this.http.json("POST", "/auth/api-keys", { body: key });
  }

  async revokeApiKey(id: string): Promise<void> {
    await this.http.json("DELETE", `/auth/api-keys/${id}`);
  }

  // --- orgs ---------------------------------------------------------------------------------------

  /** Act in another org from now on (a refresh naming it): `@auth.org` in rules, rooms. */
  async switchOrg(orgId: string): Promise<Session> {
    return this.refreshSession({ orgId });
  }

  // --- tokens -------------------------------------------------------------------------------------

  /** Credentials.token: the access token, refreshed first when it is about to expire. */
  async token(): Promise<string | null> {
    if (this.apiKey) return this.apiKey;
    let session = this.current;
    if (!session) return null;
    if (Date.now() >= session.expires_at - margin(session)) {
      try {
        session = await this.refreshSession();
      } catch (error) {
        if (error instanceof LitebaseError && error.status === 0 && Date.now() < session.expires_at) {
          return session.access_token; // offline, but the token still works: use it
        }
        throw error;
      }
    }
    return session.access_token;
  }

  /** Credentials.refused: the server refused `token`; refresh unless it was already replaced. */
  async refused(token: string): Promise<boolean> {
    if (this.apiKey || !this.current) return false;
    if (this.current.access_token !== token) return true;
    await this.refreshSession();
    return true;
  }

  /** Trade the refresh token for a new pair. Concurrent callers share one request; across tabs a
   * Web Lock lets one tab refresh while the others wait and take its result. */
  refreshSession(options: { orgId?: string } = {}): Promise<Session> {
    if (options.orgId) return this.locked(() => this.refreshNow(options.orgId));
    if (!this.inflight) {
      // What "already refreshed" is measured against: the refresh token now (an access token
      // minted in the same second with the same claims can be identical to the last one).
      const stale = this.current?.refresh_token;
      this.inflight = this.locked((waited) => this.refreshUnlessDone(stale, waited)).finally(() => {
        this.inflight = null;
      });
    }
    return this.inflight;
  }

  /** Run `work` holding the cross-tab refresh lock; `waited` says another tab held it first. */
  private async locked<T>(work: (waited: boolean) => Promise<T>): Promise<T> {
    const locks = this.options.crossTab ? (globalThis.navigator as { locks?: LockManager } | undefined)?.locks : undefined;
    if (!locks) return work(false);
    const name = `litebase:refresh:${this.options.storageKey}`;
    const free = await locks.request(name, { ifAvailable: true }, async (lock) =>
      lock === null ? null : { value: await work(false) },
    );
    return free ? free.value : locks.request(name, () => work(true));
  }

  private async refreshUnlessDone(stale: string | undefined, waited: boolean): Promise<Session> {
    // Another tab may have refreshed while this one waited for the lock: take its session. Its
    // message can still be on the way when the lock comes free, so a tab that waited waits for it.
    const fresh = this.newer(stale) ?? (waited ? await this.news(stale) : null);
    if (fresh) {
      if (fresh.refresh_token !== this.current?.refresh_token) this.adopt(fresh, "TOKEN_REFRESHED");
      return fresh;
    }
    return this.refreshNow();
  }

  /** A usable session other than the one whose refresh token is `stale`, if this tab has one. */
  private newer(stale: string | undefined): Session | null {
    for (const session of [this.current, this.readStored()]) {
      if (session && session.refresh_token !== stale && Date.now() < session.expires_at - margin(session)) return session;
    }
    return null;
  }

  /** Wait for another tab's new session to reach this one, up to NEWS_WAIT_MS. */
  private news(stale: string | undefined): Promise<Session | null> {
    return new Promise((resolve) => {
      const done = (session: Session | null): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(session);
      };
      const check = (): void => {
        const session = this.newer(stale);
        if (session) done(session);
      };
      const timer = setTimeout(() => done(this.newer(stale)), NEWS_WAIT_MS);
      this.waiters.add(check);
      check();
    });
  }

  private async refreshNow(orgId?: string): Promise<Session> {
    const session = this.readStored() ?? this.current;
    if (!session) throw new LitebaseError(401, { title: "Not signed in", code: "not_signed_in" });
    const body = {
      grant_type: "refresh_token",
      refresh_token: session.refresh_token,
      ...(orgId ? { org_id: orgId } : {}),
    };
    try {
      const tokens = await this.http.json<TokenResponse>("POST", "/auth/token", { body, auth: false });
      return this.keep(tokens, "TOKEN_REFRESHED");
    } catch (error) {
      if (error instanceof LitebaseError && error.status === 401 && BAD_GRANT.has(error.code ?? "")) {
        // A tab without Web Locks may have rotated it first: its result is in the store.
        const stored = this.readStored();
        if (stored && stored.refresh_token !== session.refresh_token) {
          this.adopt(stored, "TOKEN_REFRESHED");
          return stored;
        }
        this.forget(true);
      }
      throw error;
    }
  }

  // --- signing in with a provider (OAuth 2.0 / OpenID Connect) ------------------------------------

  /** The sign-in providers the server offers. */
  async listOAuthProviders(): Promise<OAuthProvider[]> {
    return this.http.json<OAuthProvider[]>("GET", "/auth/oauth/providers", { auth: false });
  }

  /** Sign in with a provider: makes a PKCE pair, keeps the verifier (sessionStorage), and sends
   * the browser to the provider (`skipBrowserRedirect`: only returns the URL). The browser comes
   * back to `redirectTo` with `?code=`: call `handleOAuthRedirect()` (or `exchangeOAuthCode`). */
  async signInWithOAuth(provider: string, options: OAuthOptions): Promise<{ url: string }> {
    const challenge = await this.newVerifier();
    const query = new URLSearchParams({ redirect_to: options.redirectTo, code_challenge: challenge, code_challenge_method: "S256" });
    const url = `${this.http.url}/auth/oauth/${encodeURIComponent(provider)}/authorize?${query}`;
    return this.go(url, options);
  }

  /** Link a provider to the signed-in account (any session, an anonymous one too: the account
   * keeps its id and records). Comes back like `signInWithOAuth`; the exchange answers a new
   * session of the same account. */
  async linkIdentity(provider: string, options: OAuthOptions): Promise<{ url: string }> {
    const challenge = await this.newVerifier();
    const body = { redirect_to: options.redirectTo, code_challenge: challenge, code_challenge_method: "S256" };
    const { url } = await this.http.json<{ url: string }>("POST", `/auth/identities/${encodeURIComponent(provider)}/link`, { body });
    return this.go(url, options);
  }

  /** Exchange the one-time `code` the provider's trip brought back, with the kept verifier (or
   * the one given): signed in. The verifier is forgotten either way (a code works once). */
  async exchangeOAuthCode(code: string, codeVerifier?: string): Promise<Session> {
    const verifier = codeVerifier ?? this.options.verifierStorage.getItem(this.verifierKey);
    this.options.verifierStorage.removeItem(this.verifierKey);
    if (!verifier) {
      throw new LitebaseError(400, { title: "Bad Request", code: "no_code_verifier", detail: "No PKCE verifier is kept for this code: start the sign-in again (in this tab)" });
    }
    return this.grant({ grant_type: "oauth_code", code, code_verifier: verifier });
  }

  /** Read the URL the browser came back to (default: this page's): signed in when it carries
   * `?code=`, a `LitebaseError` (code `access_denied`, `provider_refused`…) when it carries
   * `?error=`, null when neither. Removes them from the address bar in a browser. */
  async handleOAuthRedirect(url?: string): Promise<Session | null> {
    const here = (globalThis as { location?: { href: string } }).location;
    const address = new URL(url ?? here?.href ?? "");
    const code = address.searchParams.get("code");
    const error = address.searchParams.get("error");
    if (!code && !error) return null;
    if (url === undefined) this.cleanAddress(address);
    if (error) {
      this.options.verifierStorage.removeItem(this.verifierKey);
      throw new LitebaseError(400, { title: "Sign-in failed", code: error, detail: address.searchParams.get("error_description") ?? error });
    }
    return this.exchangeOAuthCode(code as string);
  }

  /** My linked provider accounts. */
  async listIdentities(): Promise<Page<Identity>> {
    return toPage<Identity>(await this.http.json("GET", "/auth/identities"));
  }

  /** Unlink one (409 `last_sign_in_method` when it is the account's last way in). */
  async unlinkIdentity(id: string): Promise<void> {
    await this.http.json("DELETE", `/auth/identities/${encodeURIComponent(id)}`);
  }

  private get verifierKey(): string {
    return `${this.options.storageKey}:pkce`;
  }

  /** A new PKCE verifier, kept; its S256 challenge. */
  private async newVerifier(): Promise<string> {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    const verifier = base64url(bytes);
    this.options.verifierStorage.setItem(this.verifierKey, verifier);
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    return base64url(new Uint8Array(digest));
  }

  private go(url: string, options: OAuthOptions): { url: string } {
    const here = (globalThis as { location?: { assign(url: string): void } }).location;
    if (!options.skipBrowserRedirect && here && typeof here.assign === "function") here.assign(url);
    return { url };
  }

  private cleanAddress(address: URL): void {
    const history = (globalThis as { history?: { replaceState(data: unknown, unused: string, url: string): void } }).history;
    if (!history) return;
    for (const name of ["code", "error", "error_description"]) address.searchParams.delete(name);
    history.replaceState(null, "", address.toString());
  }

  // --- keeping the session ------------------------------------------------------------------------

  private async grant(body: Record<string, unknown>): Promise<Session> {
    return this.keep(await this.http.json<TokenResponse>("POST", "/auth/token", { body, auth: false }), "SIGNED_IN");
  }

  private keep(tokens: TokenResponse, event: AuthEvent): Session {
    const session: Session = { ...tokens, expires_at: Date.now() + tokens.expires_in * 1000 };
    this.options.storage.setItem(this.options.storageKey, JSON.stringify(session));
    this.channel?.postMessage({ session, event });
    this.adopt(session, event);
    return session;
  }

  private adopt(session: Session, event: AuthEvent): void {
    this.current = session;
    this.schedule();
    this.emit(event);
    for (const waiter of [...this.waiters]) waiter();
  }

  private forget(everywhere: boolean): void {
    const had = this.current !== null;
    this.current = null;
    clearTimeout(this.timer);
    if (everywhere) {
      this.options.storage.removeItem(this.options.storageKey);
      this.channel?.postMessage({ session: null, event: "SIGNED_OUT" });
    }
    if (had) this.emit("SIGNED_OUT");
  }

  private userChanged(user: User): void {
    if (!this.current) return;
    this.current = { ...this.current, user };
    this.options.storage.setItem(this.options.storageKey, JSON.stringify(this.current));
    this.emit("USER_UPDATED");
  }

  /** Another tab refreshed, signed in or out. */
  private heard(message: { session: Session | null; event: AuthEvent }): void {
    if (message.session) {
      if (message.session.refresh_token !== this.current?.refresh_token) this.adopt(message.session, message.event);
    } else {
      this.forget(false);
    }
  }

  private readStored(): Session | null {
    try {
      const raw = this.options.storage.getItem(this.options.storageKey);
      return raw ? (JSON.parse(raw) as Session) : null;
    } catch {
      return null;
    }
  }

  /** Refresh a little before expiry (a random part of the margin, so tabs rarely collide). */
  private schedule(): void {
    clearTimeout(this.timer);
    const session = this.current;
    if (!session || !this.options.autoRefresh || this.apiKey) return;
    const wait = session.expires_at - margin(session) * (0.5 + Math.random() / 2) - Date.now();
    this.timer = setTimeout(() => {
      this.refreshSession().catch(() => {
        // offline or signed out elsewhere: the next call tries again, or SIGNED_OUT was emitted
        if (this.current === session) this.timer = setTimeout(() => this.schedule(), 5_000);
      });
    }, Math.max(0, wait));
    (this.timer as { unref?: () => void }).unref?.();
  }

  private emit(event: AuthEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event, this.current);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /** Stop the timer and the tab channel (a client that is thrown away). */
  dispose(): void {
    clearTimeout(this.timer);
    this.channel?.close();
    this.listeners.clear();
  }
}

function base64url(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** How long before expiry to refresh: a minute, or a quarter of a short-lived token's life. */
function margin(session: Session): number {
  return Math.min(60_000, session.expires_in * 250);
}

