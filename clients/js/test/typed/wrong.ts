// Mistakes the generated types must catch: every line marked `// wrong` is a compile error, and
// nothing else is.
import { createClient } from "@litebase/client";
import type { Database } from "./database";

const lb = createClient<Database>("http://127.0.0.1:8000");

export async function main(): Promise<void> {
  const notes = lb.collection("notes");
  const tasks = lb.collection("tasks");
  const created = await notes.create({ title: "ok" });
  await notes.create({ titel: "typo" }); // wrong
  await notes.create({ body: "no title" }); // wrong
  console.log(created.titel); // wrong
  await notes.update(created.id, { public: "yes" }); // wrong
  lb.collection("nottes"); // wrong
  await notes.list({ fields: ["titel"] }); // wrong
  await tasks.get(created.id, { expand: ["assignee"] }); // wrong
  await tasks.create({ project: "p", title: "t", status: "finished" }); // wrong
  const task = await tasks.get(created.id);
  const status: "todo" = task.status; // wrong
  console.log(status);
}
