/** One way to call the API: bearer tokens, JSON bodies, problem+json errors, pages and
 * server-sent events. */

import { errorFrom, LitebaseError } from "./errors.js";

export type Query = Record<string, string | number | boolean | readonly string[] | null | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  /** A multipart body instead of JSON (files); its Content-Type is set by the runtime. */
  form?: FormData;
  /** Bytes of the body sent so far, of the total: through XMLHttpRequest where the runtime has
   * it (browsers), as the upload goes; elsewhere (fetch has no upload progress) once, at the end. */
  onProgress?: (sent: number, total: number) => void;
  headers?: Record<string, string>;
  /** Send the bearer credential (default true). */
  auth?: boolean;
  signal?: AbortSignal;
}

/** A page of a list: `next_cursor` is null on the last one. */
export interface Page<T> {
  items: T[];
  next_cursor: string | null;
  total?: number;
}

/** The one place a list answer is read. Every list route answers `{items, next_cursor}`; a bare
 * array (a route not moved to pages yet) is one page. */
export function toPage<T>(body: unknown): Page<T> {
  if (Array.isArray(body)) return { items: body as T[], next_cursor: null };
  const page = (body ?? {}) as Partial<Page<T>>;
  const result: Page<T> = { items: page.items ?? [], next_cursor: page.next_cursor ?? null };
  if (typeof page.total === "number") result.total = page.total;
  return result;
}

/** Every item of every page, fetching the next page only when the loop gets there. */
export async function* everyItem<T>(
  fetchPage: (cursor: string | undefined) => Promise<Page<T>>,
): AsyncGenerator<T, void, undefined> {
  let cursor: string | undefined;
  do {
    const page = await fetchPage(cursor);
    yield* page.items;
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
}

export interface Credentials {
  /** The bearer to send now (refreshed first when close to expiry), or null when signed out. */
  token(): Promise<string | null>;
  /** The token was refused (401): get a new one unless someone already did. True to retry. */
  refused(token: string): Promise<boolean>;
}

export class Http {
  constructor(
    readonly url: string,
    readonly fetch: typeof globalThis.fetch,
    public credentials: Credentials | null = null,
  ) {}

  /** A fetch with the credential and problem errors: what the call answered, as a Response. */
  async send(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json", ...options.headers };
    let body: BodyInit | undefined;
    if (options.form !== undefined) {
      body = options.form;
    } else if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const target = this.url + path + queryString(options.query);
    const useAuth = options.auth !== false && this.credentials !== null;
    let token = useAuth ? await this.credentials!.token() : null;
    for (let attempt = 0; ; attempt++) {
      if (token) headers.authorization = `Bearer ${token}`;
      let response: Response;
      try {
        const init: RequestInit = { method, headers };
        if (body !== undefined) init.body = body;
        if (options.signal) init.signal = options.signal;
        response =
          options.onProgress && options.form && typeof XMLHttpRequest !== "undefined"
            ? await sendWithProgress(target, init, options.form, options.onProgress)
            : await this.fetch(target, init);

      } catch (cause) {
        if (options.signal?.aborted) throw cause;
        const error = new LitebaseError(0, { title: "Network error", detail: String(cause), code: "network" });
        (error as { cause?: unknown }).cause = cause;
        throw error;
      }
      if (response.ok) {
        if (options.onProgress && options.form && typeof XMLHttpRequest === "undefined") {
          const total = formSize(options.form);
          options.onProgress(total, total);
        }
        return response;
      }
      if (response.status === 401 && token && attempt === 0) {
        // The token died early (revoked, the clock was off, another tab switched org): once more.
        const again = await this.credentials!.refused(token).catch(() => false);
        if (again) {
          await response.body?.cancel();
          token = await this.credentials!.token();
          continue;
        }
      }
      throw await errorFrom(response);
    }
  }

  /** The JSON answer (undefined for 204). */
  async json<T>(method: string, path: string, options?: RequestOptions): Promise<T> {
    const response = await this.send(method, path, options);
    return (await readJson(response)) as T;
  }
}

/** The bytes a form's parts hold (what the progress of an upload counts). */
function formSize(form: FormData): number {
  let total = 0;
  for (const [, value] of form.entries()) total += typeof value === "string" ? new TextEncoder().encode(value).length : value.size;
  return total;
}

/** One request through XMLHttpRequest, for its upload progress; answered as a fetch Response. */
function sendWithProgress(
  url: string,
  init: RequestInit,
  form: FormData,
  onProgress: (sent: number, total: number) => void,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(init.method ?? "POST", url);
    for (const [name, value] of Object.entries((init.headers ?? {}) as Record<string, string>)) xhr.setRequestHeader(name, value);
    xhr.responseType = "text";
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    };
    xhr.onload = () => {
      const headers = new Headers();
      for (const line of xhr.getAllResponseHeaders().trim().split(/[\r\n]+/)) {
        const at = line.indexOf(":");
        if (at > 0) headers.append(line.slice(0, at).trim(), line.slice(at + 1).trim());
      }
      const status = xhr.status;
      resolve(new Response(status === 204 || status === 304 ? null : xhr.responseText, { status, headers }));
    };
    xhr.onerror = () => reject(new TypeError("the upload failed (network)"));
    xhr.onabort = () => reject(new DOMException("The upload was aborted", "AbortError"));
    init.signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(form);
  });
}

export async function readJson(response: Response): Promise<unknown> {
  if (response.status === 204) return undefined;
  const text = await response.text();
  return text ? JSON.parse(text) : undefined;
}

function queryString(query: Query | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue;
    params.set(key, Array.isArray(value) ? value.join(",") : String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

export interface ServerEvent<T = unknown> {
  event: string;
  data: T;
}

/** The events of a `text/event-stream` answer, as they arrive. */
export async function* serverEvents<T = unknown>(response: Response): AsyncGenerator<ServerEvent<T>> {
  if (!response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (!data.length) continue;
        const text = data.join("\n");
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // not JSON: the text as it came
        }
        yield { event, data: parsed as T };
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined); // a loop that stopped early closes the request
  }
}
