#!/usr/bin/env node
// Syntax-checks the page's own JavaScript as the browser parses it:
// www/app.js as a module; the disk worker and index.html's inline script
// as classic scripts, with vm.Script (`node --check` would not do for
// those: Node 20 retries a file that fails as CommonJS as a module, so it
// accepts `import` or top-level `await`, which break a classic script).
// Run from the repository root (`just lint-js`).
const { readFileSync } = require("fs");
const { Script } = require("vm");
const { spawnSync } = require("child_process");
let failed = false;
function classic(file, source, lineOffset = 0) {
  try {
    new Script(source, { filename: file, lineOffset });
  } catch (e) {
    console.error(String(e.stack).split("\n    at ")[0]);
    failed = true;
  }
}
function esModule(file) {
  const args = ["--check", "--input-type=module"];
  const input = readFileSync(file);
  const run = spawnSync(process.execPath, args, { input, stdio: ["pipe", "inherit", "inherit"] });
  if (run.status !== 0) {
    console.error(`(that was ${file})`);
    failed = true;
  }
}
esModule("www/app.js");
esModule("www/demo/demo.js");
esModule("tests/site/page.js");
classic("peer-wasm/src/disk_worker.js", readFileSync("peer-wasm/src/disk_worker.js", "utf8"));
const html = readFileSync("www/index.html", "utf8");
const inline = [...html.matchAll(/<script>\n([\s\S]*?)<\/script>/g)];
if (inline.length === 0) {
  console.error("www/index.html: no inline <script> found to check");
  failed = true;
}
for (const m of inline) {
  classic("www/index.html", m[1], html.slice(0, m.index).split("\n").length);
}
process.exit(failed ? 1 : 0);
