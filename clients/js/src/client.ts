/** createClient: one object for a Litebase server, typed by your collections. */

import { Auth } from "./auth.js";
import { CollectionClient } from "./collections.js";
import { Files } from "./files.js";
import { Http } from "./http.js";
import { Realtime, type WebSocketConstructor } from "./realtime.js";
import { AI, Jobs, Orgs } from "./services.js";
import { defaultStore, tabStore, type SessionStore } from "./storage.js";
import type { AnyDatabase, CollectionName, GenericDatabase } from "./types.js";

export interface ClientOptions {
  /** Where the session is kept: localStorage in a browser, memory elsewhere by default. */
  storage?: SessionStore;
  /** The key it is kept under (default `litebase.session:<url>`); tabs with the same key share
   * one session and one refresh. */
  storageKey?: string;
  /** Where a sign-in with a provider keeps its PKCE verifier during the trip: the tab's
   * sessionStorage in a browser, else `storage`. */
  verifierStorage?: SessionStore;
  /** Act with an API key instead of a session (servers, scripts). */
  apiKey?: string;
  /** Refresh before the access token expires (default true). */
  autoRefresh?: boolean;
  /** One refresh across tabs (Web Locks) and sign-ins/outs shared (BroadcastChannel): default
   * on with localStorage, off with another store (which other tabs may not share). */
  crossTab?: boolean;
  fetch?: typeof globalThis.fetch;
  /** Where the runtime has none (Node 20 without --experimental-websocket): `ws`'s WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Longest wait between realtime reconnects, ms (default 10,000). */
  maxBackoff?: number;
}

export class LitebaseClient<DB extends GenericDatabase = AnyDatabase> {
  readonly url: string;
  readonly auth: Auth;
  readonly orgs: Orgs;
  readonly jobs: Jobs;
  readonly ai: AI;
  /** File tokens and URLs for `<img src>` (docs/files.md). */
  readonly files: Files;
  private readonly http: Http;
  private live: Realtime | null = null;
  private readonly options: ClientOptions;

  constructor(url: string, options: ClientOptions = {}) {
    this.url = url.replace(/\/+$/, "");
    this.options = options;
    const fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.http = new Http(this.url, fetcher);
    const storage = options.storage ?? defaultStore();
    this.auth = new Auth(this.http, {
      storage,
      verifierStorage: options.verifierStorage ?? tabStore() ?? storage,
      storageKey: options.storageKey ?? `litebase.session:${this.url}`,
      autoRefresh: options.autoRefresh ?? true,
      crossTab: options.crossTab ?? storage === (globalThis as { localStorage?: unknown }).localStorage,
    });
    if (options.apiKey) this.auth.apiKey = options.apiKey;
    this.http.credentials = this.auth;
    const realtime = () => this.realtime;
    this.orgs = new Orgs(this.http, this.auth);
    this.jobs = new Jobs(this.http, realtime);
    this.ai = new AI(this.http);
    this.files = new Files(this.http, this.auth);
    let userId = this.auth.user?.id;
    this.auth.onAuthStateChange((event, session) => {
      const live = this.live;
      const changed = session !== null && userId !== undefined && session.user.id !== userId;
      userId = session?.user.id;
      if (event === "SIGNED_OUT" || changed) this.files.clear();
      if (!live) return;
      if (event === "SIGNED_OUT") live.reset();
      else if (changed) {
        live.close(); // another person: their subscriptions start over
        live.connect();
      } else if (session && event === "TOKEN_REFRESHED") live.renewToken(session.access_token);
    });
  }

  /** The records of one collection. */
  collection<C extends CollectionName<DB>>(name: C): CollectionClient<DB, C> {
    return new CollectionClient<DB, C>(this.http, name, () => this.realtime);
  }

  /** The realtime socket (opened by the first subscription). */
  get realtime(): Realtime {
    this.live ??= new Realtime({
      url: `${this.url.replace(/^http/, "ws")}/realtime`,
      WebSocket: this.options.WebSocket,
      token: () => this.auth.token(),
      refused: (token) => this.auth.refused(token).catch(() => false),
      maxBackoff: this.options.maxBackoff,
    });
    return this.live;
  }

  /** Your own channel (`user:<id>`): what the server pushes to you (asks answered over realtime…). */
  onUserMessage(handler: Parameters<Realtime["subscribe"]>[1], options: Parameters<Realtime["subscribe"]>[2] = {}) {
    const user = this.auth.user;
    if (!user) throw new Error("sign in first");
    return this.realtime.subscribe(`user:${user.id}`, handler, options);
  }

  /** fetch with your credential (fresh), for routes the client has no method for and for the
   * `openai` package: `new OpenAI({ baseURL: lb.url + "/v1", apiKey: "-", fetch: lb.fetch })`. */
  readonly fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const headers = new Headers(init.headers);
    const token = await this.auth.token();
    if (token) headers.set("authorization", `Bearer ${token}`);
    const fetcher = this.options.fetch ?? globalThis.fetch;
    return fetcher(input, { ...init, headers });
  };

  /** What the `openai` package needs to call the gateway as you: `new OpenAI(lb.openAIOptions())`. */
  openAIOptions(): { baseURL: string; apiKey: string; fetch: typeof globalThis.fetch } {
    return { baseURL: `${this.url}/v1`, apiKey: "litebase-session", fetch: this.fetch as typeof globalThis.fetch };
  }

  /** Stop timers, the tab channel and the socket. */
  close(): void {
    this.live?.close();
    this.auth.dispose();
  }
}

export function createClient<DB extends GenericDatabase = AnyDatabase>(url: string, options: ClientOptions = {}): LitebaseClient<DB> {
  return new LitebaseClient<DB>(url, options);
}
