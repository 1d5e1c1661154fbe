const OPEN_FILES = 64;
let tab;
// Open access handles by "content/name", least recently used first.
const open = new Map();
let queue = Promise.resolve();
onmessage = (e) => {
  queue = queue.then(() => handle(e.data)).then(
    (value) => postMessage({ value }, value instanceof ArrayBuffer ? [value] : []),
    (err) => {
      // A batch that cannot be written goes back to the page.
      const parts = e.data.op === "write" ? e.data.parts : [];
      postMessage(
        { error: String((err && err.message) || err), parts },
        parts.map((part) => part.buffer),
      );
    },
  );
};
async function access(content, name, create) {
  const key = `${content}/${name}`;
  let handle = open.get(key);
  if (handle) {
    open.delete(key);
  } else {
    const dir = await tab.getDirectoryHandle(content, { create });
    const file = await dir.getFileHandle(name, { create });
    handle = { file, sync: await file.createSyncAccessHandle() };
    if (open.size >= OPEN_FILES) {
      const [oldest, old] = open.entries().next().value;
      open.delete(oldest);
      old.sync.close();
    }
  }
  open.set(key, handle);
  return handle;
}
async function handle(m) {
  if (m.op === "open") {
    if (!self.FileSystemFileHandle || !FileSystemFileHandle.prototype.createSyncAccessHandle) {
      throw new Error("this browser has no synchronous file access in workers");
    }
    const root = await navigator.storage.getDirectory();
    const top = await root.getDirectoryHandle(m.root, { create: true });
    tab = await top.getDirectoryHandle(m.tab, { create: true });
    return null;
  }
  if (m.op === "write") {
    const { file, sync } = await access(m.content, m.name, true);
    sync.truncate(0);
    let at = 0;
    for (const part of m.parts) {
      const wrote = sync.write(part, { at });
      if (wrote !== part.byteLength) {
        throw new Error(`wrote ${wrote} of ${part.byteLength} bytes: is the disk full?`);
      }
      at += wrote;
    }
    return file.getFile();
  }
  if (m.op === "read") {
    const { sync } = await access(m.content, m.name, false);
    const size = sync.getSize();
    const to = Math.min(m.to, size);
    const bytes = new Uint8Array(Math.max(0, to - m.from));
    const read = sync.read(bytes, { at: m.from });
    if (read !== bytes.length) {
      throw new Error(`read ${read} of ${bytes.length} bytes`);
    }
    return bytes.buffer;
  }
  if (m.op === "remove") {
    for (const [key, { sync }] of open) {
      if (key.startsWith(`${m.content}/`)) {
        sync.close();
        open.delete(key);
      }
    }
    await tab.removeEntry(m.content, { recursive: true });
    return null;
  }
  throw new Error(`unknown request ${m.op}`);
}
