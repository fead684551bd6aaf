/** The realtime socket that comes back by itself: jittered backoff, resume with `since` (no
 * change missed, none twice), reconnect at once when the network returns or a hidden tab is
 * shown, and the token renewed on the open socket. */

import { RealtimeError } from "./errors.js";

export interface RecordEvent<Row = Record<string, unknown>> {
  type: "event";
  sub: string;
  channel: string;
  event_id: number;
  op: "insert" | "update" | "delete";
  record: Row;
}

export interface JobUpdate {
  type: "job";
  job_id: string;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  progress: number;
  result: unknown;
  error: unknown;
}

export interface BroadcastMessage<P = unknown> {
  type: "broadcast";
  channel: string;
  event: string;
  payload: P;
  /** The sender's user id; null for a message from the server (`user:` channels). */
  from: string | null;
}

export interface PresenceEntry<S = Record<string, unknown>> {
  user: string;
  state: S;
}

export interface PresenceChange<S = Record<string, unknown>> {
  type: "presence";
  channel: string;
  joins: Record<string, PresenceEntry<S>>;
  leaves: Record<string, PresenceEntry<S>>;
}

export type RealtimeState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface SubscribeOptions {
  filter?: string;
  /** Replay the changes after this `event_id` first. */
  since?: number;
  /** Rooms: hear your own broadcasts too. */
  self?: boolean;
  /** The server refused the subscription (`history_gone`, `bad_filter`, `forbidden`…); it ends. */
  onError?: (error: Error) => void;
  /** Confirmed by the server, on each (re)connect. */
  onSubscribed?: () => void;
}

type Frame = { type: string; [key: string]: unknown };

interface SocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => SocketLike;

export interface RealtimeConfig {
  url: string;
  WebSocket?: WebSocketConstructor | undefined;
  token: () => Promise<string | null>;
  /** The socket refused this token (4401): get a new one; false when signed out. */
  refused: (token: string) => Promise<boolean>;
  /** Longest wait between tries, in ms (default 10 s). */
  maxBackoff?: number | undefined;
}

/** One subscription; it lives across reconnects until `unsubscribe()`. */
export class Subscription {
  /** The last `event_id` delivered: resumed from on reconnect. */
  lastEventId: number | undefined;
  /** Settles when the server first confirms (or refuses) the subscription. */
  readonly ready: Promise<void>;
  /** Confirmed on the current socket. */
  active = false;
  private seen = new Set<number>();
  private settle!: (error?: Error) => void;

  constructor(
    private readonly realtime: Realtime,
    readonly id: string,
    readonly channel: string,
    readonly handler: (frame: never) => void,
    readonly options: SubscribeOptions,
  ) {
    this.lastEventId = options.since;
    this.ready = new Promise<void>((resolve, reject) => {
      this.settle = (error) => (error ? reject(error) : resolve());
    });
    this.ready.catch(() => undefined); // a refusal also reaches onError
  }

  unsubscribe(): void {
    this.realtime.drop(this);
  }

  /** @internal */
  frame(): Frame {
    const { filter, self } = this.options;
    const frame: Frame = { type: "subscribe", id: this.id, channel: this.channel };
    if (filter !== undefined) frame.filter = filter;
    if (self !== undefined) frame.self = self;
    if (this.lastEventId !== undefined) frame.since = this.lastEventId;
    return frame;
  }

  /** @internal */
  confirmed(): void {
    this.active = true;
    this.settle();
    this.options.onSubscribed?.();
  }

  /** @internal */
  refused(error: Error): void {
    this.settle(error);
    this.options.onError?.(error);
  }

  /** @internal */
  deliver(frame: Frame): void {
    const eventId = frame.event_id;
    if (typeof eventId === "number") {
      if (this.seen.has(eventId)) return; // the relay is at-least-once
      this.seen.add(eventId);
      if (this.seen.size > 10_000) this.seen.delete(this.seen.values().next().value as number);
      this.lastEventId = Math.max(this.lastEventId ?? 0, eventId);
    }
    (this.handler as (frame: Frame) => void)(frame);
  }
}

const GONE = new Set(["history_gone", "replay_too_long", "bad_filter", "unknown_channel", "forbidden", "duplicate_id", "too_many_subscriptions", "insufficient_scope"]);

export class Realtime {
  state: RealtimeState = "idle";
  private socket: SocketLike | null = null;
  private readonly subs = new Map<string, Subscription>();
  private readonly waiting: string[] = [];
  private readonly stateListeners = new Set<(state: RealtimeState) => void>();
  private counter = 0;
  private failures = 0;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private awaitingPong = false;
  private stopped = false;
  private lastToken: string | null = null;
  private refusedToken: string | null = null;
  private readonly wake = () => this.reconnectNow();
  private readonly shown = () => {
    if ((globalThis as { document?: { visibilityState?: string } }).document?.visibilityState === "visible") this.reconnectNow();
  };

  constructor(private readonly config: RealtimeConfig) {
    const target = globalThis as { addEventListener?: (type: string, listener: () => void) => void };
    target.addEventListener?.("online", this.wake);
    (globalThis as { document?: EventTarget }).document?.addEventListener?.("visibilitychange", this.shown);
  }

  onStateChange(listener: (state: RealtimeState) => void): () => void {
    this.stateListeners.add(listener);
    return () => void this.stateListeners.delete(listener);
  }

  /** Frames on a channel (`collection:notes`, `room:lobby`, `user:<id>`, `job:<id>`). */
  subscribe<F = Frame>(channel: string, handler: (frame: F) => void, options: SubscribeOptions = {}): Subscription {
    const sub = new Subscription(this, `s${++this.counter}`, channel, handler as (frame: never) => void, options);
    this.subs.set(sub.id, sub);
    if (this.state === "open") this.write(sub.frame());
    else this.connect();
    return sub;
  }

  /** @internal */
  drop(sub: Subscription): void {
    if (!this.subs.delete(sub.id)) return;
    if (this.state === "open") this.write({ type: "unsubscribe", id: sub.id });
  }

  /** Send to everyone subscribed to a room (subscribe to it first). */
  broadcast(channel: string, event: string, payload?: unknown): void {
    this.sendWhenOpen({ type: "broadcast", channel, event, payload });
  }

  /** Set your presence state in a room (subscribe to it first). */
  presence(channel: string, state: Record<string, unknown>): void {
    this.sendWhenOpen({ type: "presence", channel, state });
  }

  /** A room: broadcasts and presence among the members of your active org. */
  room<P = unknown, S extends Record<string, unknown> = Record<string, unknown>>(
    name: string,
    options: { self?: boolean; onBroadcast?: (message: BroadcastMessage<P>) => void; onPresence?: (members: Record<string, PresenceEntry<S>>, change: PresenceChange<S>) => void; onError?: (error: Error) => void } = {},
  ): Room<P, S> {
    return new Room<P, S>(this, `room:${name}`, options);
  }

  /** Open the socket now (subscribing does it too). */
  connect(): void {
    this.stopped = false;
    if (!this.socket && this.retry === undefined) this.open();
  }

  /** Close for good (until `connect` or a new subscription). */
  close(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.retry = undefined;
    const socket = this.socket;
    this.socket = null;
    this.stopBeat();
    socket?.close(1000, "client closed");
    for (const sub of this.subs.values()) sub.active = false;
    this.setState("closed");
  }

  /** Forget every subscription and close (sign-out). */
  reset(): void {
    this.subs.clear();
    this.close();
  }

  /** The network came back or the tab is visible: try at once, or check the open socket. */
  reconnectNow(): void {
    if (this.stopped || this.subs.size === 0) return;
    if (this.state === "open") return this.ping();
    this.failures = 0; // an attempt under way that fails tries again soon
    if (this.retry !== undefined) {
      clearTimeout(this.retry);
      this.retry = undefined;
      this.open();
    }
  }

  /** The session's token changed: renew it on the open socket (no reconnect, nothing lost). */
  renewToken(token: string): void {
    if (this.state === "open" && token !== this.lastToken) {
      this.lastToken = token;
      this.write({ type: "auth", token });
    }
  }

  private sendWhenOpen(frame: Frame): void {
    if (this.state === "open") this.write(frame);
    else {
      if (this.waiting.length >= 100) this.waiting.shift();
      this.waiting.push(JSON.stringify(frame));
      this.connect();
    }
  }

  private write(frame: Frame): void {
    try {
      this.socket?.send(JSON.stringify(frame));
    } catch {
      // closing: the close handler reconnects and resubscribes
    }
  }

  private open(): void {
    this.retry = undefined;
    const Socket = this.config.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Socket) throw new Error("No WebSocket here: pass one as createClient(url, { WebSocket })");
    this.setState(this.failures === 0 && this.state !== "reconnecting" ? "connecting" : "reconnecting");
    let socket: SocketLike;
    try {
      socket = new Socket(this.config.url);
    } catch {
      return this.later();
    }
    this.socket = socket;
    socket.onopen = () => void this.authenticate(socket);
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      let frame: Frame;
      try {
        frame = JSON.parse(String(message.data)) as Frame;
      } catch {
        return;
      }
      this.dispatch(frame);
    };
    socket.onclose = (event) => this.closed(socket, event.code);
    // Some runtimes (Node 20's undici) report a refused connection with an error and no close.
    socket.onerror = () => this.closed(socket, 1006);
    const opening = setTimeout(() => {
      if (socket === this.socket && this.state !== "open") {
        socket.close(4000, "no ready in time");
        this.closed(socket, 4000);
      }
    }, 10_000);
    (opening as { unref?: () => void }).unref?.();
  }

  private async authenticate(socket: SocketLike): Promise<void> {
    try {
      if (this.refusedToken !== null) {
        const token = this.refusedToken;
        this.refusedToken = null;
        if (!(await this.config.refused(token))) return this.close(); // signed out
      }
      const token = await this.config.token();
      if (socket !== this.socket) return;
      if (!token) return this.close();
      this.lastToken = token;
      socket.send(JSON.stringify({ type: "auth", token }));
    } catch {
      if (socket === this.socket) socket.close(4000, "no token"); // offline: try again later
    }
  }

  private dispatch(frame: Frame): void {
    switch (frame.type) {
      case "ready":
        this.failures = 0;
        this.setState("open");
        for (const sub of this.subs.values()) this.write(sub.frame());
        for (const raw of this.waiting.splice(0)) this.socket?.send(raw);
        this.startBeat();
        return;
      case "pong":
        this.awaitingPong = false;
        return;
      case "subscribed":
        this.subs.get(String(frame.id))?.confirmed();
        return;
      case "unsubscribed": {
        const sub = this.subs.get(String(frame.id));
        if (sub && frame.reason) {
          this.subs.delete(sub.id);
          sub.refused(new RealtimeError(String(frame.reason), "the server ended this subscription"));
        }
        return;
      }
      case "event":
        this.subs.get(String(frame.sub))?.deliver(frame);
        return;
      case "job":
        return this.toChannel(`job:${String(frame.job_id)}`, frame);
      case "broadcast":
      case "presence":
        return this.toChannel(String(frame.channel), frame);
      case "error":
        return this.refusal(frame);
    }
  }

  private toChannel(channel: string, frame: Frame): void {
    for (const sub of this.subs.values()) if (sub.channel === channel) sub.deliver(frame);
  }

  private refusal(frame: Frame): void {
    const code = String(frame.code);
    const sub = typeof frame.ref === "string" ? this.subs.get(frame.ref) : undefined;
    if (code === "token_expired") {
      // Events are held until a new auth frame; then what was refused meanwhile is sent again.
      void this.config.token().then((token) => {
        if (token) {
          this.lastToken = null;
          this.renewToken(token);
        }
        if (sub && !sub.active) this.write(sub.frame());
      }, () => undefined);
      return;
    }
    if (sub && GONE.has(code)) {
      this.subs.delete(sub.id);
      sub.refused(new RealtimeError(code, String(frame.message ?? "")));
    }
  }

  private closed(socket: SocketLike, code: number): void {
    if (socket !== this.socket) return;
    this.socket = null;
    try {
      socket.close(); // after an error: make sure it is gone
    } catch {
      // already closing
    }
    this.stopBeat();
    for (const sub of this.subs.values()) sub.active = false;
    if (this.stopped) return this.setState("closed");
    if (code === 4401 && this.lastToken) this.refusedToken = this.lastToken;
    this.later();
  }

  private later(): void {
    this.setState("reconnecting");
    const max = this.config.maxBackoff ?? 10_000;
    const wait = Math.min(max, 250 * 2 ** this.failures++) * (0.5 + Math.random());
    this.retry = setTimeout(() => this.open(), wait);
  }

  /** A socket can die without a close (a laptop asleep, a tab frozen): a ping left unanswered
   * for a beat means it is gone. */
  private startBeat(): void {
    this.stopBeat();
    this.awaitingPong = false;
    this.heartbeat = setInterval(() => this.ping(), 25_000);
    (this.heartbeat as { unref?: () => void }).unref?.();
  }

  private ping(): void {
    const socket = this.socket;
    if (!socket) return;
    if (this.awaitingPong) {
      socket.close(4000, "no pong");
      this.closed(socket, 4000);
      return;
    }
    this.awaitingPong = true;
    this.write({ type: "ping" });
    const check = setTimeout(() => {
      if (this.awaitingPong && socket === this.socket) this.ping();
    }, 5_000);
    (check as { unref?: () => void }).unref?.();
  }

  private stopBeat(): void {
    clearInterval(this.heartbeat);
    this.awaitingPong = false;
  }

  private setState(state: RealtimeState): void {
    if (state === this.state) return;
    this.state = state;
    for (const listener of this.stateListeners) listener(state);
  }
}

/** A room: `broadcast`, `track` (presence), and who is here. */
export class Room<P = unknown, S extends Record<string, unknown> = Record<string, unknown>> {
  /** Who is in the room now, by socket. */
  members: Record<string, PresenceEntry<S>> = {};
  readonly subscription: Subscription;
  private tracked: S | undefined;

  constructor(
    private readonly realtime: Realtime,
    readonly channel: string,
    options: { self?: boolean; onBroadcast?: (message: BroadcastMessage<P>) => void; onPresence?: (members: Record<string, PresenceEntry<S>>, change: PresenceChange<S>) => void; onError?: (error: Error) => void },
  ) {
    const subscribeOptions: SubscribeOptions = {};
    if (options.self !== undefined) subscribeOptions.self = options.self;
    if (options.onError) subscribeOptions.onError = options.onError;
    subscribeOptions.onSubscribed = () => {
      this.members = {}; // the full state follows as joins
      if (this.tracked) realtime.presence(channel, this.tracked); // after a reconnect, be here again
    };
    this.subscription = realtime.subscribe<BroadcastMessage<P> | PresenceChange<S>>(
      channel,
      (frame) => {
        if (frame.type === "broadcast") options.onBroadcast?.(frame);
        else {
          const members = { ...this.members };
          for (const key of Object.keys(frame.leaves)) delete members[key];
          Object.assign(members, frame.joins);
          this.members = members;
          options.onPresence?.(members, frame);
        }
      },
      subscribeOptions,
    );
  }

  get ready(): Promise<void> {
    return this.subscription.ready;
  }

  broadcast(event: string, payload?: P): void {
    this.realtime.broadcast(this.channel, event, payload);
  }

  /** Share your state with the room (typing, cursor, status). */
  track(state: S): void {
    this.tracked = state;
    this.realtime.presence(this.channel, state);
  }

  leave(): void {
    this.subscription.unsubscribe();
  }
}
