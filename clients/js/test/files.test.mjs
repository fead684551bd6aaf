import assert from "node:assert/strict";
import { after, test } from "node:test";
import { LitebaseError, fileUrl } from "../dist/index.js";
import { URL, closeAll, signedUp } from "./helpers.mjs";

after(closeAll);

const PDF = new TextEncoder().encode("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");

test("a record is created and changed with files; the owner downloads them", async () => {
  const { lb } = await signedUp();
  const notes = lb.collection("notes");
  const progress = [];
  const note = await notes.create(
    { title: "with files" },
    {
      files: { attachments: [new File([PDF], "Report One.pdf"), new Blob([PDF])] },
      onProgress: (sent, total) => progress.push([sent, total]),
    },
  );
  assert.equal(note.title, "with files");
  assert.equal(note.attachments.length, 2);
  assert.match(note.attachments[0], /^Report_One_[a-z0-9]{10}\.pdf$/);
  // Node has no XMLHttpRequest: progress comes once, when the upload is done.
  assert.equal(progress.length, 1);
  assert.equal(progress[0][0], progress[0][1]);

  const blob = await notes.download(note, note.attachments[0]);
  assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), PDF);
  assert.equal(blob.type, "application/pdf");

  // An update keeps one name and adds a file after it.
  const changed = await notes.update(note.id, { attachments: [note.attachments[1]] }, { files: { attachments: new File([PDF], "more.pdf") } });
  assert.equal(changed.attachments.length, 2);
  assert.equal(changed.attachments[0], note.attachments[1]);
  assert.match(changed.attachments[1], /^more_/);
});

test("a file URL with a file token opens a protected file without a header", async () => {
  const { lb } = await signedUp();
  const notes = lb.collection("notes");
  const note = await notes.create({ title: "img" }, { files: { attachments: new File([PDF], "a.pdf") } });
  const plain = notes.fileUrl(note, note.attachments[0]);
  assert.equal(plain, `${URL}/files/notes/${note.id}/${note.attachments[0]}`);
  assert.equal((await fetch(plain)).status, 404); // protected: no caller, no file

  const url = await lb.files.url("notes", note, note.attachments[0]);
  assert.match(url, /\?token=/);
  const opened = await fetch(url);
  assert.equal(opened.status, 200);
  assert.deepEqual(new Uint8Array(await opened.arrayBuffer()), PDF);
  // The token is kept and reused while it lasts.
  assert.equal(await lb.files.token(), new globalThis.URL(url).searchParams.get("token"));
  assert.equal(fileUrl(URL, "notes", note.id, "x.pdf", { download: true }), `${URL}/files/notes/${note.id}/x.pdf?download=true`);
  assert.equal(notes.fileUrl(note.id, "x.png", { thumb: "100x100", token: "t" }), `${URL}/files/notes/${note.id}/x.png?thumb=100x100&token=t`);
});

test("a refused upload is a LitebaseError naming the field", async () => {
  const { lb } = await signedUp();
  const html = new File(["<!DOCTYPE html><html><script>alert(1)</script></html>"], "fine.pdf", { type: "application/pdf" });
  const refused = await lb.collection("notes").create({ title: "x" }, { files: { attachments: html } }).catch((e) => e);
  assert.ok(refused instanceof LitebaseError);
  assert.equal(refused.status, 415);
  assert.equal(refused.problem.errors[0].field, "attachments");
});
