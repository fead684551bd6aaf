/** Passkeys in the browser: the server's WebAuthn options (JSON, binary fields in base64url) go
 * to `navigator.credentials`, and what the authenticator answers goes back as JSON. */

import { LitebaseError } from "./errors.js";

export interface Passkey {
  id: string;
  name: string;
  /** How the browser reaches the authenticator: `internal`, `hybrid` (a phone), `usb`… */
  transports: string[];
  created_at: string;
  last_used_at: string | null;
}

/** The server's options: what `navigator.credentials.create()` or `.get()` takes, as JSON. */
export interface PasskeyOptions {
  publicKey: Record<string, unknown>;
}

type Json = Record<string, unknown>;
type Descriptor = { id: string; type: "public-key"; transports?: AuthenticatorTransport[] };

/** Unpadded base64url to bytes. */
export function fromBase64url(text: string): ArrayBuffer {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

/** Bytes to unpadded base64url. */
export function toBase64url(data: ArrayBuffer | ArrayBufferView): string {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const descriptors = (list: unknown): PublicKeyCredentialDescriptor[] =>
  ((list as Descriptor[] | undefined) ?? []).map((d) => ({ ...d, id: fromBase64url(d.id) }));

function credentials(): CredentialsContainer {
  const container = (globalThis.navigator as Navigator | undefined)?.credentials;
  if (!container || typeof globalThis.PublicKeyCredential !== "function") {
    throw new LitebaseError(0, { title: "This browser cannot use passkeys (no WebAuthn)", code: "passkeys_unsupported" });
  }
  return container;
}

/** Make a passkey for registration options: the new credential, as the server reads it. Throws
 * the browser's `NotAllowedError` when the person cancels. */
export async function createPasskey({ publicKey }: PasskeyOptions): Promise<Json> {
  const user = publicKey.user as Json;
  const options = {
    ...publicKey,
    challenge: fromBase64url(publicKey.challenge as string),
    user: { ...user, id: fromBase64url(user.id as string) },
    excludeCredentials: descriptors(publicKey.excludeCredentials),
  } as PublicKeyCredentialCreationOptions;
  const credential = (await credentials().create({ publicKey: options })) as PublicKeyCredential;
  const response = credential.response as AuthenticatorAttestationResponse;
  return asJson(credential, {
    clientDataJSON: toBase64url(response.clientDataJSON),
    attestationObject: toBase64url(response.attestationObject),
    transports: response.getTransports?.() ?? [],
  });
}

/** Sign with a passkey for sign-in options: the assertion, as the server reads it. */
export async function usePasskey({ publicKey }: PasskeyOptions): Promise<Json> {
  const options = {
    ...publicKey,
    challenge: fromBase64url(publicKey.challenge as string),
    allowCredentials: descriptors(publicKey.allowCredentials),
  } as PublicKeyCredentialRequestOptions;
  const credential = (await credentials().get({ publicKey: options })) as PublicKeyCredential;
  const response = credential.response as AuthenticatorAssertionResponse;
  return asJson(credential, {
    clientDataJSON: toBase64url(response.clientDataJSON),
    authenticatorData: toBase64url(response.authenticatorData),
    signature: toBase64url(response.signature),
    userHandle: response.userHandle ? toBase64url(response.userHandle) : null,
  });
}

function asJson(credential: PublicKeyCredential, response: Json): Json {
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? null,
    response,
  };
}
