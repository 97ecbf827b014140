// The official openai npm client against bareflow serve (tests/serve_openai_test.py runs it):
// prints one JSON object with what each call returned.
//   node openai_client.mjs NODE_MODULES_DIR BASE_URL
import { createRequire } from "node:module";
const require = createRequire(process.argv[2] + "/");
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: process.argv[3], apiKey: "sekrit" });
const prompt = "Once upon a time";
const out = {};
const completion = await client.completions.create({ model: "stories260K.bin", prompt, max_tokens: 40, temperature: 0 });
out.completion = completion.choices[0].text;
out.prompt_tokens = completion.usage.prompt_tokens;
const seeded = await client.completions.create({ model: "x", prompt, max_tokens: 30, temperature: 0.8, top_p: 0.9, seed: 42 });
out.seeded = seeded.choices[0].text;
const messages = [{ role: "user", content: "Tell me a story." }];
const chat = await client.chat.completions.create({ model: "x", messages, max_tokens: 30, temperature: 0 });
out.chat = chat.choices[0].message.content;
let streamed = "";
const stream = await client.chat.completions.create({ model: "x", messages, max_tokens: 30, temperature: 0, stream: true });
for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
out.chat_streamed = streamed;
const all = await Promise.all([1, 2, 3, 4].map(() =>
  client.completions.create({ model: "x", prompt, max_tokens: 40, temperature: 0 })));
out.concurrent = all.map((c) => c.choices[0].text);
const models = await client.models.list();
out.models = models.data.map((m) => m.id);
try {
  await new OpenAI({ baseURL: process.argv[3], apiKey: "wrong", maxRetries: 0 }).models.list();
  out.wrong_key = "accepted";
} catch (e) {
  out.wrong_key = e.status;
}
console.log(JSON.stringify(out));
