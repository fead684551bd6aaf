import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, test } from "node:test";
import { ConflictError, LitebaseError, etagOf } from "../dist/index.js";
import { closeAll, signedUp } from "./helpers.mjs";

after(closeAll);

test("create, get, update, delete, with ETags", async () => {
  const { lb } = await signedUp();
  const notes = lb.collection("notes");
  const created = await notes.create({ title: "Groceries", tags: ["home"] });
  assert.equal(created.title, "Groceries");
  const read = await notes.get(created.id);
  assert.deepEqual(read, created);
  const header = etagOf(read);
  assert.match(header, /^"\d+"$/);
  // The ETag computed from updated_at is the one the server sends.
  assert.equal(etagOf({ updated_at: read.updated_at }), header);
  const changed = await notes.update(created.id, { public: true }, { ifMatch: read });
  assert.equal(changed.public, true);
  assert.notEqual(etagOf(changed), header);
  await notes.delete(created.id, { ifMatch: changed });
  const gone = await notes.get(created.id).catch((e) => e);
  assert.ok(gone instanceof LitebaseError);
  assert.equal(gone.status, 404);
});

test("a stale If-Match is a ConflictError carrying the record as it is now", async () => {
  const { lb } = await signedUp();
  const notes = lb.collection("notes");
  const first = await notes.create({ title: "v1" });
  const second = await notes.update(first.id, { title: "v2" });
  const conflict = await notes.update(first.id, { title: "v3" }, { ifMatch: first }).catch((e) => e);
  assert.ok(conflict instanceof ConflictError);
  assert.equal(conflict.status, 412);
  assert.equal(conflict.code, "precondition_failed");
  assert.equal(conflict.current.title, "v2");
  assert.equal(conflict.etag, etagOf(second));
  const stale = await notes.delete(first.id, { ifMatch: etagOf(first) }).catch((e) => e);
  assert.ok(stale instanceof ConflictError);
  assert.equal(stale.current.id, first.id);
  await notes.delete(first.id, { ifMatch: conflict.current });
});

test("list with filter, sort, fields and count; every page with for await", async () => {
  const { lb } = await signedUp();
  const notes = lb.collection("notes");
  const marker = randomUUID().slice(0, 8);
  for (const title of ["b", "a", "c", "e", "d"]) await notes.create({ title: `${marker} ${title}`, tags: [title] });
  const page = await notes.list({ filter: `title ~ "${marker}"`, sort: ["title"], limit: 2, count: true, fields: ["id", "title"] });
  assert.equal(page.total, 5);
  assert.deepEqual(page.items.map((n) => n.title), [`${marker} a`, `${marker} b`]);
  assert.deepEqual(Object.keys(page.items[0]).sort(), ["id", "title"]);
  assert.ok(page.next_cursor);
  const titles = [];
  for await (const note of notes.iterate({ filter: `title ~ "${marker}"`, sort: "-title", limit: 2 })) titles.push(note.title.split(" ")[1]);
  assert.deepEqual(titles, ["e", "d", "c", "b", "a"]);
  assert.equal((await notes.all({ filter: `tags ?= "c" && title ~ "${marker}"` })).length, 1);
  const bad = await notes.list({ filter: "titel = 1" }).catch((e) => e);
  assert.equal(bad.status, 422);
  assert.equal(bad.errors[0].field, "filter");
});

test("batch: all or nothing, and a failure names the operation", async () => {
  const { lb } = await signedUp();
  const notes = lb.collection("notes");
  const existing = await notes.create({ title: "old" });
  const done = await notes.batch([
    { op: "create", data: { title: "one" } },
    { op: "update", id: existing.id, data: { title: "two" }, if_match: etagOf(existing) },
  ]);
  assert.deepEqual(done.results.map((r) => r.op), ["create", "update"]);
  assert.equal(done.results[1].record.title, "two");
  const refused = await notes.batch([
    { op: "delete", id: existing.id },
    { op: "create", data: { title: 5 } },
  ]).catch((e) => e);
  assert.equal(refused.status, 422);
  assert.equal(refused.errors[0].field, "operations[1].data.title");
  assert.equal((await notes.get(existing.id)).title, "two"); // the delete did not happen
});

test("expand puts related records inline", async () => {
  const { lb } = await signedUp();
  await lb.orgs.create("Expansion");
  await lb.auth.refreshSession(); // the new org is the active one
  const project = await lb.collection("projects").create({ name: "launch" });
  const tasks = lb.collection("tasks");
  const task = await tasks.create({ project: project.id, title: "write the post" });
  assert.equal((await tasks.get(task.id, { expand: ["project"] })).expand.project.name, "launch");
  const page = await tasks.list({ expand: ["project"] });
  assert.deepEqual(page.items.map((t) => t.expand.project.id), [project.id]);
  const wrong = await tasks.list({ expand: ["assignee"] }).catch((e) => e);
  assert.equal(wrong.errors[0].field, "expand");
});
