/** Files on records: upload forms, file URLs, and the file tokens that let `<img src>` read a
 * protected file (docs/files.md). */

import type { Auth } from "./auth.js";
import type { Http } from "./http.js";

/** New files by file field: one Blob (a File keeps its name) or several. */
export type FilesToUpload = Record<string, Blob | readonly Blob[]>;

export interface UploadOptions {
  /** New files for the record's file fields; an update adds them after the names it keeps. */
  files?: FilesToUpload;
  /** Bytes sent so far, of the total: as the upload goes where the runtime has
   * XMLHttpRequest (browsers); once, at the end, elsewhere (Node, Deno, Bun: fetch). */
  onProgress?: (sent: number, total: number) => void;
  signal?: AbortSignal;
}

/** What a file token may open: every file you may view, or one collection's, record's or file's. */
export interface FileScope {
  collection?: string;
  record?: string;
  name?: string;
}

/** The multipart body of a create or update with files: the fields as the `data` part (JSON),
 * then each file as a part named after its field. */
export function uploadForm(data: unknown, files: FilesToUpload): FormData {
  const form = new FormData();
  form.append("data", JSON.stringify(data ?? {}));
  for (const [field, value] of Object.entries(files)) {
    const list: readonly Blob[] = value instanceof Blob ? [value] : (value as readonly Blob[]);
    for (const file of list) form.append(field, file, (file as { name?: string }).name || "file");
  }
  return form;
}

/** The URL of a record's file; `token` (a file token) for a protected one where no header can
 * go, `download` to have the browser save it rather than show it, `thumb` ("100x100", a size
 * the field declares) for a thumbnail of an image or of a PDF (its first page). */
export function fileUrl(
  base: string,
  collection: string,
  record: string | { id: string },
  name: string,
  options: { token?: string | undefined; download?: boolean; thumb?: string } = {},
): string {
  const id = typeof record === "string" ? record : record.id;
  const query = new URLSearchParams();
  if (options.thumb) query.set("thumb", options.thumb);
  if (options.token) query.set("token", options.token);
  if (options.download) query.set("download", "true");
  const text = query.toString();
  return `${base}/files/${encodeURIComponent(collection)}/${encodeURIComponent(id)}/${encodeURIComponent(name)}${text ? `?${text}` : ""}`;
}

export class Files {
  private readonly tokens = new Map<string, { token: string; until: number }>();

  constructor(
    private readonly http: Http,
    private readonly auth: Auth,
  ) {}

  /** A file token (kept and reused until shortly before it expires). Signed-in sessions only:
   * an API key sends itself as the bearer instead. */
  async token(scope: FileScope = {}): Promise<string> {
    const key = `${this.auth.user?.id ?? ""}|${scope.collection ?? ""}|${scope.record ?? ""}|${scope.name ?? ""}`;
    const kept = this.tokens.get(key);
    if (kept && kept.until > Date.now()) return kept.token;
    const issued = await this.http.json<{ token: string; expires_in: number }>("POST", "/files/token", { body: scope });
    // Renewed a fifth of its life (at most 10 s) before it ends, so a URL made now still works.
    const margin = Math.min(10_000, (issued.expires_in * 1000) / 5);
    this.tokens.set(key, { token: issued.token, until: Date.now() + issued.expires_in * 1000 - margin });
    return issued.token;
  }

  /** A URL for `<img src>` and links: with a file token when signed in with a session (so a
   * protected file opens), plain otherwise (public fields; API keys send a header instead). */
  async url(
    collection: string,
    record: string | { id: string },
    name: string,
    options: { download?: boolean; thumb?: string } = {},
  ): Promise<string> {
    const token = this.auth.user && !this.auth.apiKey ? await this.token() : undefined;
    return fileUrl(this.http.url, collection, record, name, { ...options, token });
  }

  /** Forget kept tokens (signed out, another person). */
  clear(): void {
    this.tokens.clear();
  }
}
