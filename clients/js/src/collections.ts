/** Records of one collection: CRUD with ETags, filtered and sorted pages, every page with
 * `for await`, batches, search and ask. */

import { ConflictError, LitebaseError } from "./errors.js";
import { fileUrl, type UploadOptions, uploadForm } from "./files.js";
import { everyItem, type Http, type Page, type RequestOptions, readJson, serverEvents, toPage } from "./http.js";
import type { RecordEvent, Realtime, Subscription } from "./realtime.js";
import type {
  CollectionName,
  Expanded,
  GenericDatabase,
  InsertOf,
  RelationName,
  RowOf,
  UpdateOf,
} from "./types.js";

export interface ListOptions<Field extends string, E extends string> {
  /** An expression in the filter language: `done = false && title ~ "milk"`. */
  filter?: string;
  /** Fields, `-` for descending: `["-created_at", "title"]` or `"-created_at,title"`. */
  sort?: string | readonly string[];
  limit?: number;
  cursor?: string;
  /** Only these fields. */
  fields?: readonly Field[];
  /** Relations to put inline under `expand`. */
  expand?: readonly E[];
  /** Add `total` (costly on big tables). */
  count?: boolean;
}

export interface SearchOptions {
  mode?: "vector" | "text" | "hybrid";
  k?: number;
  filter?: string;
  min_score?: number;
}

export interface SearchHit<Row> {
  record: Row;
  score: number;
  chunk: { index: number; content: string; [extra: string]: unknown };
  /** The record's file the chunk is from (`Embed(files=[...])`); absent for its text fields. */
  file?: string;
  /** The PDF page the chunk is on, from 1; absent for other files and for text fields. */
  page?: number;
}

export interface Citation {
  n: number;
  record_id: string;
  chunk: { index: number; content: string };
  score: number;
  cited: boolean;
  /** The record's file the chunk is from; absent for its text fields. */
  file?: string;
  /** The PDF page the chunk is on, from 1; absent otherwise. */
  page?: number;
}

export interface AskAnswer {
  answer: string;
  citations: Citation[];
}

/** What `askStream` yields: text as it is written, then the whole answer once. */
export type AskEvent = { type: "delta"; content: string } | { type: "done"; answer: AskAnswer };

export type BatchOperation<Insert, Update> =
  | { op: "create"; data: Insert }
  | { op: "update"; id: string; data: Update; if_match?: string }
  | { op: "delete"; id: string; if_match?: string };

export interface BatchResult<Row> {
  results: { op: "create" | "update" | "delete"; id: string; record: Row | null }[];
}

export interface EmbeddingStatus {
  version: string | null;
  model: string;
  pending: number;
  failed: number;
  done: number;
  building: string | null;
  /** Documents of `Embed(files=[...])`, per file; only for a collection that embeds files. */
  files?: FileEmbeddingStatus;
}

export interface FileEmbeddingStatus {
  pending: number;
  failed: number;
  done: number;
  /** The failed files with why (no text layer, unreadable…), newest first. */
  failures: { record_id: string; file: string; reason: string; failed_at: string }[];
  /** With `?record=<id>`: that record's documents one by one. */
  record?: {
    file: string;
    status: "pending" | "done" | "failed";
    reason: string | null;
    chunks: number | null;
    pages: number | null;
    updated_at: string | null;
  }[];
}

const etags = new WeakMap<object, string>();

/** The ETag of a record: the one its answer carried, else computed from `updated_at` exactly
 * as the server does (microseconds since the epoch, quoted), so list items have one too. */
export function etagOf(record: object): string | undefined {
  const known = etags.get(record);
  if (known) return known;
  const stamp = (record as { updated_at?: unknown }).updated_at;
  if (typeof stamp !== "string") return undefined;
  const parts = /^(.+T\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)?$/.exec(stamp);
  if (!parts) return undefined;
  const seconds = Date.parse(`${parts[1]}${parts[3] ?? "Z"}`) / 1000;
  const micros = seconds * 1_000_000 + Number((parts[2] ?? "").padEnd(6, "0"));
  // Python's int(datetime.timestamp() * 1e6): the same two correctly rounded float steps.
  return `"${Math.trunc((micros / 1_000_000) * 1_000_000)}"`;
}

function remember<T>(record: T, response: Response): T {
  const etag = response.headers.get("etag");
  if (etag && record && typeof record === "object") etags.set(record, etag);
  return record;
}

export class CollectionClient<DB extends GenericDatabase, C extends CollectionName<DB>> {
  readonly path: string;

  constructor(
    private readonly http: Http,
    readonly name: C,
    private readonly realtime: () => Realtime,
  ) {
    this.path = `/collections/${encodeURIComponent(name)}`;
  }

  /** One page: `{items, next_cursor}` (pass `next_cursor` back as `cursor` for the next). */
  async list<E extends RelationName<DB, C> = never>(
    options: ListOptions<keyof RowOf<DB, C> & string, E> = {},
  ): Promise<Page<Expanded<DB, C, E>>> {
    const { sort, count, ...rest } = options;
    const query = { ...rest, sort: typeof sort === "string" ? sort : sort?.join(","), count: count ? "true" : undefined };
    return toPage(await this.http.json("GET", `${this.path}/records`, { query }));
  }

  /** Every matching record, page by page as the loop goes: `for await (const r of notes.iterate())`. */
  iterate<E extends RelationName<DB, C> = never>(
    options: Omit<ListOptions<keyof RowOf<DB, C> & string, E>, "cursor"> = {},
  ): AsyncGenerator<Expanded<DB, C, E>, void, undefined> {
    return everyItem((cursor) => this.list<E>(cursor ? { ...options, cursor } : options));
  }

  /** Every matching record in one array (mind big collections: `iterate` streams). */
  async all<E extends RelationName<DB, C> = never>(
    options: Omit<ListOptions<keyof RowOf<DB, C> & string, E>, "cursor"> = {},
  ): Promise<Expanded<DB, C, E>[]> {
    const items: Expanded<DB, C, E>[] = [];
    for await (const item of this.iterate<E>(options)) items.push(item);
    return items;
  }

  async get<E extends RelationName<DB, C> = never>(
    id: string,
    options: { expand?: readonly E[] } = {},
  ): Promise<Expanded<DB, C, E>> {
    const response = await this.http.send("GET", `${this.path}/records/${id}`, { query: { expand: options.expand } });
    return remember((await readJson(response)) as Expanded<DB, C, E>, response);
  }

  /** A new record; with `files`, they come with it (multipart: docs/files.md). */
  async create(data: InsertOf<DB, C>, options: UploadOptions = {}): Promise<RowOf<DB, C>> {
    const response = await this.http.send("POST", `${this.path}/records`, this.body(data, options));
    return remember((await readJson(response)) as RowOf<DB, C>, response);
  }

  /** Change fields. With `ifMatch` (an ETag, or a record you read) the change happens only if
   * nobody changed the record since; otherwise a `ConflictError` carries it as it is now.
   * `files` adds files after the names a file field keeps (`data` may list fewer: the others
   * are removed). */
  async update(
    id: string,
    data: UpdateOf<DB, C>,
    options: UploadOptions & { ifMatch?: string | RowOf<DB, C> } = {},
  ): Promise<RowOf<DB, C>> {
    const headers = this.precondition(options.ifMatch);
    try {
      const request = { ...this.body(data, options), ...(headers ? { headers } : {}) };
      const response = await this.http.send("PATCH", `${this.path}/records/${id}`, request);
      return remember((await readJson(response)) as RowOf<DB, C>, response);
    } catch (error) {
      throw await this.withCurrent(error, id);
    }
  }

  async delete(id: string, options: { ifMatch?: string | RowOf<DB, C> } = {}): Promise<void> {
    const headers = this.precondition(options.ifMatch);
    try {
      await this.http.send("DELETE", `${this.path}/records/${id}`, { headers });
    } catch (error) {
      throw await this.withCurrent(error, id);
    }
  }

  /** Up to 100 operations in one transaction: all happen, or none. */
  async batch(operations: BatchOperation<InsertOf<DB, C>, UpdateOf<DB, C>>[]): Promise<BatchResult<RowOf<DB, C>>> {
    return this.http.json("POST", `${this.path}/records:batch`, { body: { operations } });
  }

  /** Records by meaning, words or both, best first. */
  async search(query: string, options: SearchOptions = {}): Promise<SearchHit<RowOf<DB, C>>[]> {
    const result = await this.http.json<{ items: SearchHit<RowOf<DB, C>>[] }>("POST", `${this.path}/search`, {
      body: { query, ...options },
    });
    return result.items;
  }

  /** An answer from the collection's records, with citations. */
  async ask(question: string, options: SearchOptions = {}): Promise<AskAnswer> {
    return this.http.json("POST", `${this.path}/ask`, { body: { question, ...options, stream: false } });
  }

  /** The answer as it is written: `delta`s, then `done` with the whole answer. */
  async *askStream(question: string, options: SearchOptions & { signal?: AbortSignal } = {}): AsyncGenerator<AskEvent> {
    const { signal, ...search } = options;
    const response = await this.http.send("POST", `${this.path}/ask`, {
      body: { question, ...search, stream: true },
      headers: { accept: "text/event-stream" },
      ...(signal ? { signal } : {}),
    });
    for await (const { event, data } of serverEvents<Record<string, unknown>>(response)) {
      if (event === "delta") yield { type: "delta", content: String(data.content ?? "") };
      else if (event === "done") yield { type: "done", answer: data as unknown as AskAnswer };
      else if (event === "error") throw new LitebaseError(Number(data.status ?? 502), data);
    }
  }

  /** Admins: how far embedding has come; `record` lists that record's documents one by one. */
  async embeddingStatus(options: { record?: string } = {}): Promise<EmbeddingStatus> {
    const query = options.record ? `?record=${encodeURIComponent(options.record)}` : "";
    return this.http.json("GET", `${this.path}/embedding-status${query}`);
  }

  /** Changes as they commit (insert, update, delete), those your view rule and `filter` admit.
   * `since`: the last `event_id` you handled, to be replayed what you missed. */
  subscribe(
    onChange: (event: RecordEvent<RowOf<DB, C>>) => void,
    options: { filter?: string; since?: number; onError?: (error: Error) => void } = {},
  ): Subscription {
    return this.realtime().subscribe(`collection:${this.name}`, onChange as (frame: unknown) => void, options);
  }

  /** The URL of one of a record's files (`token`: a file token, for a protected file in
   * `<img src>`; `lb.files.url(…)` fetches one for you). */
  fileUrl(
    record: string | { id: string },
    name: string,
    options: { token?: string; download?: boolean; thumb?: string } = {},
  ): string {
    return fileUrl(this.http.url, this.name, record, name, options);
  }

  /** One of a record's files, read with your credential. */
  async download(record: string | { id: string }, name: string, options: { signal?: AbortSignal } = {}): Promise<Blob> {
    const id = typeof record === "string" ? record : record.id;
    const path = `/files/${encodeURIComponent(this.name)}/${encodeURIComponent(id)}/${encodeURIComponent(name)}`;
    const response = await this.http.send("GET", path, options.signal ? { signal: options.signal } : {});
    return response.blob();
  }

  private body(data: unknown, options: UploadOptions): RequestOptions {
    const request: RequestOptions = options.files
      ? { form: uploadForm(data, options.files) }
      : { body: data };
    if (options.onProgress) request.onProgress = options.onProgress;
    if (options.signal) request.signal = options.signal;
    return request;
  }

  private precondition(ifMatch: string | RowOf<DB, C> | undefined): Record<string, string> | undefined {
    if (ifMatch === undefined) return undefined;
    const etag = typeof ifMatch === "string" ? ifMatch : etagOf(ifMatch);
    if (!etag) throw new TypeError("ifMatch: the record has no ETag (read it with get, list or create first)");
    return { "if-match": etag };
  }

  private async withCurrent(error: unknown, id: string): Promise<unknown> {
    if (!(error instanceof ConflictError)) return error;
    try {
      error.current = await this.get(id);
    } catch (missing) {
      if (!(missing instanceof LitebaseError && missing.status === 404)) throw missing;
    }
    return error;
  }
}
