/** Problem details (RFC 9457) from the API, as typed errors. */

export interface FieldError {
  field: string;
  message: string;
  source?: string;
}

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  errors?: FieldError[];
  [extra: string]: unknown;
}

/** Every refusal the API answers (4xx/5xx problem+json), and network failures (status 0). */
export class LitebaseError extends Error {
  override readonly name: string = "LitebaseError";
  /** The HTTP status; 0 when the request never got an answer. */
  readonly status: number;
  /** The machine-readable code (`invalid_credentials`, `precondition_failed`…) when the API gives one. */
  readonly code: string | undefined;
  /** Field errors: `[{field: "title", message: "…"}]`. */
  readonly errors: FieldError[];
  /** The whole problem body. */
  readonly problem: Problem;
  /** The server's X-Request-Id, to find the request in its logs. */
  readonly requestId: string | undefined;
  /** Seconds to wait before trying again (429, 503), from Retry-After. */
  readonly retryAfter: number | undefined;

  constructor(status: number, problem: Problem, headers?: Headers) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.code = typeof problem.code === "string" ? problem.code : undefined;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.requestId = headers?.get("x-request-id") ?? undefined;
    const retry = headers?.get("retry-after");
    this.retryAfter = retry ? Number(retry) : undefined;
  }

  /** The message for one field, if the API named it. */
  fieldError(field: string): string | undefined {
    return this.errors.find((e) => e.field === field)?.message;
  }
}

/** The record changed since you read it (412 on If-Match): `current` is the record as it is now
 * (`null` if it is gone or hidden from you), `etag` its ETag, to merge and try again. */
export class ConflictError<Row = Record<string, unknown>> extends LitebaseError {
  override readonly name = "ConflictError";
  current: Row | null = null;
  readonly etag: string | undefined;

  constructor(status: number, problem: Problem, headers?: Headers) {
    super(status, problem, headers);
    this.etag = headers?.get("etag") ?? undefined;
  }
}

/** The first factor was right and two-factor sign-in is on: call
 * `auth.verifyTotp(error.mfaToken, code)` with the authenticator app's code, or
 * `auth.verifyPasskey(error.mfaToken)` when `methods` include `"passkey"`. */
export class MfaRequiredError extends LitebaseError {
  override readonly name = "MfaRequiredError";
  readonly mfaToken: string;
  /** The second steps the account has: `"totp"`, and `"passkey"` when it has one. */
  readonly methods: string[];

  constructor(status: number, problem: Problem, headers?: Headers) {
    super(status, problem, headers);
    this.mfaToken = String(problem.mfa_token ?? "");
    this.methods = Array.isArray(problem.methods) ? (problem.methods as string[]) : ["totp"];
  }
}

/** A realtime refusal (`history_gone`, `bad_filter`, `forbidden`…) for one subscription. */
export class RealtimeError extends Error {
  override readonly name = "RealtimeError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export async function errorFrom(response: Response): Promise<LitebaseError> {
  let problem: Problem;
  const text = await response.text().catch(() => "");
  try {
    const parsed: unknown = JSON.parse(text);
    problem = parsed && typeof parsed === "object" ? (parsed as Problem) : { detail: text };
  } catch {
    problem = { detail: text || response.statusText };
  }
  const { status, headers } = response;
  if (status === 412 || problem.code === "precondition_failed") return new ConflictError(status, problem, headers);
  if (problem.code === "mfa_required") return new MfaRequiredError(status, problem, headers);
  return new LitebaseError(status, problem, headers);
}
