/** @litebase/client: auth, collections, realtime, search, jobs and AI for a Litebase server. */

export { createClient, LitebaseClient, type ClientOptions } from "./client.js";
export type {
  ApiKey,
  AuthEvent,
  AuthListener,
  Identity,
  Invitation,
  Member,
  NewApiKey,
  OAuthOptions,
  OAuthProvider,
  Org,
  SecondFactor,
  Session,
  SessionInfo,
  TokenResponse,
  TotpEnabled,
  TwoFactorStatus,
  User,
} from "./auth.js";
export { Auth } from "./auth.js";
export { CollectionClient, etagOf } from "./collections.js";
export type { AskAnswer, AskEvent, BatchOperation, BatchResult, Citation, EmbeddingStatus, FileEmbeddingStatus, ListOptions, SearchHit, SearchOptions } from "./collections.js";
export { ConflictError, LitebaseError, MfaRequiredError, RealtimeError } from "./errors.js";
export { Files, fileUrl, uploadForm } from "./files.js";
export type { FileScope, FilesToUpload, UploadOptions } from "./files.js";
export type { FieldError, Problem } from "./errors.js";
export { toPage } from "./http.js";
export type { Page } from "./http.js";
export { Realtime, Room, Subscription } from "./realtime.js";
export type { BroadcastMessage, JobUpdate, PresenceChange, PresenceEntry, RealtimeState, RecordEvent, SubscribeOptions, WebSocketConstructor } from "./realtime.js";
export { AI, Jobs, Orgs } from "./services.js";
export type { Job, Prompt, PromptEvent, PromptRun, Usage, UsageRow } from "./services.js";
export { fromBase64url, toBase64url } from "./passkeys.js";
export type { Passkey, PasskeyOptions } from "./passkeys.js";
export { memoryStore, type SessionStore } from "./storage.js";
export type { AnyDatabase, CollectionName, CollectionTypes, Expanded, GenericDatabase, InsertOf, RowOf, UpdateOf } from "./types.js";
