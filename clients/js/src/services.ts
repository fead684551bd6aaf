/** Orgs, jobs, prompts, models and usage: the API beyond records. */

import type { Auth, Invitation, Member, Org, Session } from "./auth.js";
import { LitebaseError } from "./errors.js";
import { type Http, type Page, serverEvents, toPage } from "./http.js";
import type { JobUpdate, Realtime, Subscription } from "./realtime.js";

export class Orgs {
  constructor(
    private readonly http: Http,
    private readonly auth: Auth,
  ) {}

  async list(options: { limit?: number; cursor?: string } = {}): Promise<Page<Org>> {
    return toPage(await this.http.json("GET", "/orgs", { query: { ...options } }));
  }

  /** You become its owner; your first org becomes the active one at the next refresh. */
  async create(name: string): Promise<Org> {
    return this.http.json("POST", "/orgs", { body: { name } });
  }

  async get(id: string): Promise<Org> {
    return this.http.json("GET", `/orgs/${id}`);
  }

  async update(id: string, changes: { name: string }): Promise<Org> {
    return this.http.json("PATCH", `/orgs/${id}`, { body: changes });
  }

  async delete(id: string): Promise<void> {
    await this.http.json("DELETE", `/orgs/${id}`);
  }

  async members(id: string, options: { limit?: number; cursor?: string } = {}): Promise<Page<Member>> {
    return toPage(await this.http.json("GET", `/orgs/${id}/members`, { query: { ...options } }));
  }

  async setRole(id: string, userId: string, role: Member["role"]): Promise<Member> {
    return this.http.json("PATCH", `/orgs/${id}/members/${userId}`, { body: { role } });
  }

  async removeMember(id: string, userId: string): Promise<void> {
    await this.http.json("DELETE", `/orgs/${id}/members/${userId}`);
  }

  async invite(id: string, email: string, role: Member["role"] = "member"): Promise<Invitation> {
    return this.http.json("POST", `/orgs/${id}/invitations`, { body: { email, role } });
  }

  async invitations(id: string): Promise<Page<Invitation>> {
    return toPage(await this.http.json("GET", `/orgs/${id}/invitations`));
  }

  async revokeInvitation(id: string, invitationId: string): Promise<void> {
    await this.http.json("DELETE", `/orgs/${id}/invitations/${invitationId}`);
  }

  async acceptInvitation(token: string): Promise<unknown> {
    return this.http.json("POST", "/invitations/accept", { body: { token } });
  }

  /** Act in this org from now on (`@auth.org`, rooms). */
  async switchTo(id: string): Promise<Session> {
    return this.auth.switchOrg(id);
  }
}

export interface Job<Result = unknown> {
  id: string;
  type: string;
  status: JobUpdate["status"];
  progress: number;
  result: Result | null;
  error: unknown;
  [extra: string]: unknown;
}

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

export class Jobs {
  constructor(
    private readonly http: Http,
    private readonly realtime: () => Realtime,
  ) {}

  async create<Result = unknown>(
    type: string,
    input: Record<string, unknown>,
    options: { countdown?: number; run_at?: string } = {},
  ): Promise<Job<Result>> {
    return this.http.json("POST", "/jobs", { body: { type, input, ...options } });
  }

  async get<Result = unknown>(id: string): Promise<Job<Result>> {
    return this.http.json("GET", `/jobs/${id}`);
  }

  async list(options: { status?: string; type?: string; limit?: number; cursor?: string } = {}): Promise<Page<Job>> {
    return toPage(await this.http.json("GET", "/jobs", { query: { ...options } }));
  }

  async cancel(id: string): Promise<Job> {
    return this.http.json("POST", `/jobs/${id}/cancel`);
  }

  /** Live updates (status, progress) on `job:<id>`: where it stands first, then each change. */
  watch(id: string, onUpdate: (update: JobUpdate) => void, options: { onError?: (error: Error) => void } = {}): Subscription {
    return this.realtime().subscribe<JobUpdate>(`job:${id}`, onUpdate, options);
  }

  /** The job once it has finished, with `onProgress` on each update meanwhile. */
  wait(id: string, options: { onProgress?: (update: JobUpdate) => void; signal?: AbortSignal } = {}): Promise<JobUpdate> {
    return new Promise((resolve, reject) => {
      const sub = this.watch(
        id,
        (update) => {
          options.onProgress?.(update);
          if (FINISHED.has(update.status)) {
            sub.unsubscribe();
            resolve(update);
          }
        },
        { onError: reject },
      );
      options.signal?.addEventListener("abort", () => {
        sub.unsubscribe();
        reject(options.signal?.reason);
      });
    });
  }
}

export interface Prompt {
  name: string;
  version: string;
  description: string;
  model: string;
  input_schema: Record<string, unknown>;
}

export interface PromptRun {
  prompt: { name: string; version: string };
  model: string;
  output: string;
  finish_reason: string | null;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  data?: unknown;
}

export type PromptEvent = { type: "delta"; content: string } | { type: "done"; run: PromptRun };

export interface UsageRow {
  key: string | null;
  requests: number;
  failed: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface Usage {
  from: string;
  to: string;
  group_by: "model" | "key" | "user" | "org";
  items: UsageRow[];
}

export class AI {
  constructor(private readonly http: Http) {}

  async prompts(): Promise<Page<Prompt>> {
    return toPage(await this.http.json("GET", "/ai/prompts"));
  }

  async runPrompt(name: string, variables: Record<string, unknown>): Promise<PromptRun> {
    return this.http.json("POST", `/ai/prompts/${name}/run`, { body: { variables, stream: false } });
  }

  /** The prompt's answer as the model writes it: `delta`s, then `done` with the whole run. */
  async *runPromptStream(name: string, variables: Record<string, unknown>, options: { signal?: AbortSignal } = {}): AsyncGenerator<PromptEvent> {
    const response = await this.http.send("POST", `/ai/prompts/${name}/run`, {
      body: { variables, stream: true },
      headers: { accept: "text/event-stream" },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    for await (const { event, data } of serverEvents<Record<string, unknown>>(response)) {
      if (event === "delta") yield { type: "delta", content: String(data.content ?? "") };
      else if (event === "done") yield { type: "done", run: data as unknown as PromptRun };
      else if (event === "error") throw new LitebaseError(Number(data.status ?? 502), data);
    }
  }

  /** Token usage (your own; admins everyone's). `from`/`to` with their UTC offset. */
  async usage(options: { from?: string; to?: string; group_by?: Usage["group_by"] } = {}): Promise<Usage> {
    return this.http.json("GET", "/ai/usage", { query: { ...options } });
  }

  /** The model aliases you can call through `/v1`. */
  async models(): Promise<{ id: string; [extra: string]: unknown }[]> {
    const body = await this.http.json<{ data: { id: string }[] }>("GET", "/v1/models");
    return body.data;
  }
}
