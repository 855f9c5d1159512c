// A webhook receiver for the tests: it verifies every delivery with the
// standardwebhooks package, under the secret configured for the request's
// path, answers 204 when it verifies and 400 when not, and reports each
// result to the test as one JSON line on stdout.
//
// SECRETS is a JSON object from path to whsec_ secret.
"use strict";
const http = require("http");
const { Webhook } = require("standardwebhooks");

const secrets = JSON.parse(process.env.SECRETS || "{}");

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const path = req.url.split("?")[0];
    const r = { path, id: req.headers["webhook-id"] || "" };
    try {
      const secret = secrets[path];
      if (!secret) throw new Error("no secret for " + path);
      const event = new Webhook(secret).verify(body, req.headers);
      r.ok = true;
      r.type = event.type;
      r.taskId = event.data && event.data.taskId;
    } catch (e) {
      r.ok = false;
      r.error = String((e && e.message) || e);
    }
    process.stdout.write(JSON.stringify(r) + "\n");
    res.statusCode = r.ok ? 204 : 400;
    res.end();
  });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ listening: server.address().port }) + "\n");
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
