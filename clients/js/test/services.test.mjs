import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, test } from "node:test";
import OpenAI from "openai";
import { LitebaseError } from "../dist/index.js";
import { closeAll, signedUp, waitUntil } from "./helpers.mjs";

after(closeAll);

test("search finds a record once it is embedded; ask answers, whole and streamed", async () => {
  const { lb } = await signedUp();
  const notes = lb.collection("notes");
  const marker = randomUUID().slice(0, 8);
  const note = await notes.create({ title: "Basalt", body: `${marker} basalt is cooled lava.` });
  const hits = await waitUntil(async () => {
    const found = await notes.search(marker, { mode: "text", k: 3 });
    return found.length ? found : null;
  }, { timeout: 30_000, what: "the note to be searchable" });
  assert.equal(hits[0].record.id, note.id);
  assert.ok(hits[0].chunk.content.includes(marker));
  const status = await notes.embeddingStatus().catch((e) => e);
  assert.ok(status instanceof LitebaseError ? status.status === 403 : typeof status.done === "number");
  const answer = await notes.ask(`What is ${marker} basalt?`, { mode: "text", k: 2 });
  assert.equal(typeof answer.answer, "string");
  assert.equal(answer.citations[0].record_id, note.id);
  const events = [];
  for await (const event of notes.askStream(`What is ${marker} basalt?`, { mode: "text", k: 2 })) events.push(event);
  assert.ok(events.some((e) => e.type === "delta"));
  assert.equal(events.at(-1).type, "done");
  assert.equal(events.at(-1).answer.answer, events.filter((e) => e.type === "delta").map((e) => e.content).join(""));
  const refused = await notes.search(marker, { k: 0 }).catch((e) => e);
  assert.equal(refused.errors[0].field, "k");
});

test("prompts: list, run, run streamed; usage counts the calls", async () => {
  const { lb } = await signedUp();
  const prompts = await lb.ai.prompts();
  assert.ok(prompts.items.some((p) => p.name === "summarize"));
  const run = await lb.ai.runPrompt("summarize", { text: "The meeting moved to Tuesday at ten." });
  assert.equal(run.prompt.name, "summarize");
  assert.equal(typeof run.output, "string");
  const events = [];
  for await (const event of lb.ai.runPromptStream("summarize", { text: "Lava is molten rock." })) events.push(event);
  assert.equal(events.at(-1).type, "done");
  const usage = await waitUntil(async () => {
    const now = await lb.ai.usage({ group_by: "model" });
    return now.items.reduce((sum, row) => sum + row.requests, 0) >= 2 ? now : null;
  }, { what: "usage to be recorded" });
  assert.equal(usage.group_by, "model");
  const unknown = await lb.ai.runPrompt("no_such_prompt", {}).catch((e) => e);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.code, "unknown_prompt");
});

test("the /v1 gateway through the official openai client, by baseURL, as the signed-in user", async () => {
  const { lb } = await signedUp();
  const openai = new OpenAI(lb.openAIOptions());
  const models = await openai.models.list();
  assert.ok(models.data.some((m) => m.id === "chat"));
  const completion = await openai.chat.completions.create({ model: "chat", messages: [{ role: "user", content: "Say hi" }] });
  assert.equal(typeof completion.choices[0].message.content, "string");
  const stream = await openai.chat.completions.create({ model: "chat", messages: [{ role: "user", content: "Say hi" }], stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.ok(text.length > 0);
  const embeddings = await openai.embeddings.create({ model: "embed", input: "lava" });
  assert.ok(embeddings.data[0].embedding.length > 0);
  assert.deepEqual((await lb.ai.models()).map((m) => m.id).sort(), models.data.map((m) => m.id).sort());
});

test("jobs: cancel one that has not run", async () => {
  const { lb } = await signedUp();
  const job = await lb.jobs.create("import_records", { collection: "notes", format: "csv", data: "title\nlater\n" }, { countdown: 60 });
  const cancelled = await lb.jobs.cancel(job.id);
  assert.equal(cancelled.status, "cancelled");
  const bad = await lb.jobs.create("import_records", { collection: "notes", format: "xml", data: "" }).catch((e) => e);
  assert.equal(bad.status, 422);
  assert.equal(bad.errors[0].field, "input.format");
});
