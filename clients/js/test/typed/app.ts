// A small app against the types `litebase gen types --lang ts` wrote: it must compile.
import { ConflictError, createClient } from "@litebase/client";
import type { Database } from "./database";

const lb = createClient<Database>("http://127.0.0.1:8000");

export async function main(): Promise<void> {
  const notes = lb.collection("notes");
  const page = await notes.list({ filter: "public = true", sort: ["-created_at"], fields: ["id", "title"], limit: 20 });
  const first: string | undefined = page.items[0]?.title;
  const next: string | null = page.next_cursor;
  const created = await notes.create({ title: "Groceries", tags: ["home"] });
  const isPublic: boolean = created.public;
  try {
    await notes.update(created.id, { public: true }, { ifMatch: created });
  } catch (error) {
    if (error instanceof ConflictError) console.log(error.current);
  }
  const task = await lb.collection("tasks").get("0193", { expand: ["project"] });
  const projectName: string | undefined = task.expand.project?.name;
  const status: "todo" | "doing" | "done" = task.status;
  for await (const each of lb.collection("tasks").iterate({ expand: ["project"] })) console.log(each.expand.project?.name);
  await lb.collection("tasks").batch([{ op: "create", data: { project: task.project, title: "next" } }, { op: "delete", id: task.id }]);
  const sub = notes.subscribe((event) => {
    const title: string = event.record.title;
    console.log(event.op, title);
  });
  sub.unsubscribe();
  // Without generated types every collection and field is allowed.
  const loose = await createClient("http://127.0.0.1:8000").collection("anything").list();
  console.log(first, next, isPublic, projectName, status, loose.items[0]?.whatever);
}
