// A TypeScript SDK client (@modelcontextprotocol/sdk, 2025-11-25) for the tests: runs one scenario
// against a URL and prints what it saw as one JSON object.
//
//   node tests/support/ts_client.mjs <url> task <tool> '<arguments JSON>'
//   node tests/support/ts_client.mjs <url> slice
//
// task:  a task-augmented tools/call through the SDK's experimental tasks API (callToolStream), then
//        tasks/list and tasks/get: {events: [...], listed: [...], got: {...}}
// slice: tools, resources (and the first one read), prompts: {tools, resources, read, prompts}
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, scenario, ...rest] = process.argv.slice(2);
const client = new Client({ name: "slicewire-tests-ts", version: "1.0.0" }, { capabilities: {} });
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
const out = {};
try {
  if (scenario === "task") {
    const [tool, args] = rest;
    const events = [];
    const stream = client.experimental.tasks.callToolStream(
      { name: tool, arguments: JSON.parse(args || "{}") },
      CallToolResultSchema,
      { task: { ttl: 60000 } },
    );
    for await (const message of stream) {
      if (message.type === "taskCreated" || message.type === "taskStatus") {
        events.push({ type: message.type, taskId: message.task.taskId, status: message.task.status });
      } else if (message.type === "result") {
        events.push({ type: "result", result: message.result });
      } else if (message.type === "error") {
        events.push({ type: "error", error: String(message.error) });
      }
    }
    out.events = events;
    const created = events.find((e) => e.type === "taskCreated");
    out.listed = (await client.experimental.tasks.listTasks()).tasks.map((t) => t.taskId);
    if (created) out.got = await client.experimental.tasks.getTask(created.taskId);
  } else if (scenario === "slice") {
    out.tools = (await client.listTools()).tools.map((t) => t.name);
    out.resources = (await client.listResources()).resources.map((r) => r.uri);
    if (out.resources.length) out.read = await client.readResource({ uri: out.resources[0] });
    out.prompts = (await client.listPrompts()).prompts.map((p) => p.name);
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
} finally {
  await client.close();
}
console.log(JSON.stringify(out));
