import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, test } from "node:test";
import { RealtimeError } from "../dist/index.js";
import { PASSWORD, STABLE_URL, api, client, closeAll, mailTo, signedUp, tokenIn, waitUntil } from "./helpers.mjs";

after(closeAll);

test("collection changes, with a filter, in order: insert, update, delete", async () => {
  const { lb } = await signedUp();
  const marker = randomUUID().slice(0, 8);
  const seen = [];
  const sub = lb.collection("notes").subscribe((event) => seen.push(event), { filter: `title ~ "${marker}"` });
  await sub.ready;
  const notes = lb.collection("notes");
  await notes.create({ title: "not this one" });
  const note = await notes.create({ title: `${marker} yes` });
  await notes.update(note.id, { body: "changed" });
  await notes.delete(note.id);
  await waitUntil(() => seen.length >= 3, { what: "three events" });
  assert.deepEqual(seen.map((e) => e.op), ["insert", "update", "delete"]);
  assert.ok(seen.every((e) => e.record.id === note.id));
  assert.equal(sub.lastEventId, seen[2].event_id);
  const refused = lb.realtime.subscribe("collection:notes", () => {}, { filter: "titel = 1" });
  const error = await refused.ready.catch((e) => e);
  assert.ok(error instanceof RealtimeError);
  assert.equal(error.code, "bad_filter");
});

test("rooms: broadcast and presence among an org's members", async () => {
  const { lb: ada } = await signedUp();
  const org = await ada.orgs.create("Room org");
  await ada.auth.refreshSession();
  const { lb: bob, email: bobEmail } = await signedUp();
  await ada.orgs.invite(org.id, bobEmail);
  const mail = await mailTo(bobEmail, "invited to Room org");
  const token = tokenIn(mail);
  await bob.orgs.acceptInvitation(token);
  await bob.auth.switchOrg(org.id);
  const heard = [];
  const bobRoom = bob.realtime.room("lobby", { onBroadcast: (m) => heard.push(m) });
  let adaMembers = {};
  const adaRoom = ada.realtime.room("lobby", { onPresence: (members) => (adaMembers = members) });
  await Promise.all([bobRoom.ready, adaRoom.ready]);
  bobRoom.track({ status: "typing" });
  await waitUntil(() => Object.values(adaMembers).some((m) => m.state.status === "typing"), { what: "presence" });
  adaRoom.broadcast("cursor", { x: 10 });
  await waitUntil(() => heard.length === 1, { what: "broadcast" });
  assert.deepEqual(heard[0].payload, { x: 10 });
  assert.equal(heard[0].from, ada.auth.user.id);
});

test("user: channel carries an answer asked over realtime", async () => {
  const { lb } = await signedUp();
  const messages = [];
  const sub = lb.onUserMessage((m) => messages.push(m));
  await sub.ready;
  const response = await lb.fetch(`${lb.url}/collections/notes/ask`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ question: "anything?", channel: `user:${lb.auth.user.id}` }),
  });
  assert.equal(response.status, 202);
  await waitUntil(() => messages.some((m) => m.event === "ask.done"), { what: "ask.done" });
  assert.ok(messages.every((m) => m.from === null));
});

test("jobs: live progress on job:<id> until it finishes", async () => {
  const { lb } = await signedUp();
  const job = await lb.jobs.create("import_records", { collection: "notes", format: "csv", data: "title\none\ntwo\n" });
  assert.equal(job.status, "queued");
  const updates = [];
  const done = await lb.jobs.wait(job.id, { onProgress: (u) => updates.push(u) });
  assert.equal(done.status, "succeeded");
  assert.ok(updates.length >= 1);
  assert.equal((await lb.jobs.get(job.id)).status, "succeeded");
  const mine = await lb.jobs.list();
  assert.ok(mine.items.some((j) => j.id === job.id));
});

test("the token is renewed on the open socket, and events keep coming", async () => {
  const sent = [];
  class Spy extends WebSocket {
    send(data) {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  }
  const { lb } = await signedUp({ WebSocket: Spy });
  const seen = [];
  const sub = lb.collection("notes").subscribe((e) => seen.push(e));
  await sub.ready;
  const opened = sent.filter((f) => f.type === "auth").length;
  await lb.orgs.create("Renewal"); // the next token names it (a token of the same second and claims would be the same)
  const session = await lb.auth.refreshSession();
  assert.notEqual(session.access_token, sent.find((f) => f.type === "auth").token);
  await waitUntil(() => sent.some((f) => f.type === "auth" && f.token === session.access_token), { what: "auth frame" });
  assert.equal(sent.filter((f) => f.type === "auth").length, opened + 1);
  await lb.collection("notes").create({ title: "after renewal" });
  await waitUntil(() => seen.length === 1, { what: "event after renewal" });
  assert.equal(lb.realtime.state, "open");
});

test("realtime resumes after the API process dies and restarts: 500 writes, none lost, none twice", async () => {
  const { lb, email } = await signedUp();
  const writer = client({}, STABLE_URL);
  await writer.auth.signInWithPassword(email, PASSWORD);
  const marker = randomUUID().slice(0, 8);
  const received = [];
  const states = [];
  lb.realtime.onStateChange((s) => states.push(s));
  const sub = lb.collection("notes").subscribe((e) => received.push(e), { filter: `title ~ "${marker}"` });
  await sub.ready;
  let n = 0;
  const write = async (count) => {
    for (let done = 0; done < count; done += 25) {
      const ops = Array.from({ length: 25 }, () => ({ op: "create", data: { title: `${marker} ${n++}` } }));
      await writer.collection("notes").batch(ops);
    }
  };
  await write(200);
  await waitUntil(() => received.length >= 50, { what: "events before the restart" });
  await api("kill"); // the process dies: no close frame, the relay's standby takes over
  await waitUntil(() => lb.realtime.state === "reconnecting", { what: "the socket to notice" });
  await write(200); // while the API is down
  await api("start");
  lb.realtime.reconnectNow(); // what `online` and a visible tab do
  await waitUntil(() => lb.realtime.state === "open", { what: "reconnected" });
  await write(100);
  await waitUntil(() => received.length >= 500, { timeout: 30_000, what: "all 500 events" });
  const titles = received.map((e) => Number(e.record.title.split(" ")[1]));
  assert.equal(new Set(titles).size, 500);
  assert.equal(received.length, 500);
  assert.deepEqual(titles, [...titles].sort((a, b) => a - b)); // commit order
  assert.ok(states.includes("reconnecting"));
});
