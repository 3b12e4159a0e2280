/**
 * A stand-in for the user's inference server (seed 002: FastAPI on the 3090, port 8765), for
 * mstore's deploy tests and `npm run demo`. It loads no weights, but register and set_active
 * open the model path and check every safetensors header by the official rules, so deploying
 * a broken or truncated directory fails for real.
 *
 * Endpoints (JSON in and out; errors are FastAPI's `{"detail": ...}`):
 *   GET  /health               200 {"status":"ok","active_model":NAME|null,"models":N}
 *   GET  /models               200 {"models":[{"name","path","active","registered_at"}],"active":NAME|null}
 *   POST /models/register      {"name":S,"path":S}  path: a directory (searched recursively for
 *                              *.safetensors) or one .safetensors file; relative to the cwd.
 *                              200 {"registered":NAME,"files":N,"tensors":N}; a name registered
 *                              again is replaced. 404 path missing; 422 {"detail":"REL/FILE: reason"}
 *                              for a bad header, or no safetensors file at all.
 *   POST /models/set_active    {"name":S}  200 {"active":NAME}; 404 unknown name. Like a real load,
 *                              it re-checks the model's files first (422 / 404 as register).
 *   POST /generate             {"prompt":S,"max_tokens"?:N}  200 {"model","text","tokens"}: the
 *                              prompt's first max_tokens (default 16) words; 503 with no active model.
 *   POST /v1/chat/completions  {"messages":[{"role","content"}],"model"?,"max_tokens"?}  200
 *                              {"id","object":"chat.completion","created","model","choices":[{"index":0,
 *                              "message":{"role":"assistant","content"},"finish_reason":"stop"}],
 *                              "usage":{"prompt_tokens","completion_tokens","total_tokens"}}: echoes
 *                              the last user message; 503 with no active model.
 *   POST /__standin/faults     StandinFaults JSON, replacing the current set ({} recovers) → 200 the set
 *   GET  /__standin/state      200 state(): active, models, every call recorded.
 * Validation errors: 422 with FastAPI's list detail [{"type","loc":["body",F],"msg"}]; bad JSON 400;
 * unknown route 404 {"detail":"Not Found"}; wrong method 405; a body over 1 MiB 413.
 *
 * Script: node dist/scripts/inference-standin.js [--port 8765] [--host 127.0.0.1]
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { open, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { readSafetensorsHeader } from '../src/format/safetensors.js';

/** An HTTP status to answer instead (e.g. 500), or a delay before answering any seed-002 route. */
export interface StandinFaults {
  register?: number;
  setActive?: number;
  health?: number;
  delayMs?: number;
}

export interface StandinModel {
  name: string;
  path: string;
  registeredAt: string;
}

export interface StandinCall {
  method: string;
  path: string;
  status: number;
  body?: unknown;
}

export interface StandinState {
  active: string | null;
  models: StandinModel[];
  calls: StandinCall[];
}

export interface Standin {
  url: string;
  port: number;
  close(): Promise<void>;
  state(): StandinState;
  setFaults(f: StandinFaults): void;
}

export const MAX_BODY_BYTES = 1024 * 1024;
/** Oldest calls are dropped past this, so a long-running demo server stays bounded. */
const MAX_CALLS = 10_000;

/** An answer other than 200; thrown by handlers. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly detail: unknown,
  ) {
    super(typeof detail === 'string' ? detail : JSON.stringify(detail));
  }
}

interface Answer {
  status: number;
  body: unknown;
}

type Handler = (body: unknown) => Promise<Answer> | Answer;

const ok = (body: unknown): Answer => ({ status: 200, body });

/** FastAPI's request-validation answer for one field. */
function invalid(field: string, type: string, msg: string): HttpError {
  return new HttpError(422, [{ type, loc: ['body', field], msg }]);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fields(body: unknown): Record<string, unknown> {
  if (body === undefined) throw new HttpError(422, [{ type: 'missing', loc: ['body'], msg: 'Field required' }]);
  if (!isObject(body)) throw new HttpError(422, [{ type: 'model_attributes_type', loc: ['body'], msg: 'Input should be a valid dictionary or object' }]);
  return body;
}

function str(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (v === undefined) throw invalid(name, 'missing', 'Field required');
  if (typeof v !== 'string') throw invalid(name, 'string_type', 'Input should be a valid string');
  if (v === '') throw invalid(name, 'string_too_short', 'String should have at least 1 character');
  return v;
}

function optInt(body: Record<string, unknown>, name: string, min: number, max: number): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(name, 'int_type', 'Input should be a valid integer');
  if (v < min || v > max) throw invalid(name, 'int_range', `Input should be between ${min} and ${max}`);
  return v;
}

function validFaults(body: unknown): StandinFaults {
  const b = fields(body);
  const out: StandinFaults = {};
  for (const k of Object.keys(b)) {
    if (!['register', 'setActive', 'health', 'delayMs'].includes(k)) throw invalid(k, 'extra_forbidden', 'Extra inputs are not permitted');
  }
  for (const k of ['register', 'setActive', 'health'] as const) {
    const v = optInt(b, k, 100, 599);
    if (v !== undefined) out[k] = v;
  }
  const d = optInt(b, 'delayMs', 0, 600_000);
  if (d !== undefined) out.delayMs = d;
  return out;
}

/** Every *.safetensors under dir, relative with '/', sorted; symlinks followed, loops skipped. */
async function findSafetensors(root: string): Promise<string[]> {
  const found: string[] = [];
  const seen = new Set<string>();
  const walk = async (rel: string): Promise<void> => {
    const abs = path.join(root, rel);
    const real = await realpath(abs);
    if (seen.has(real)) return;
    seen.add(real);
    for (const e of await readdir(abs, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const isST = e.name.toLowerCase().endsWith('.safetensors');
      let dir = e.isDirectory();
      if (e.isSymbolicLink()) {
        // A dangling link named *.safetensors is kept: opening it reports what is wrong.
        const st = await stat(path.join(root, r)).catch(() => undefined);
        dir = st?.isDirectory() ?? false;
      }
      if (dir) await walk(r);
      else if (isST) found.push(r);
    }
  };
  await walk('');
  return found.sort();
}

async function checkFile(file: string): Promise<number> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    return (await readSafetensorsHeader(fh, size)).tensors.length;
  } finally {
    await fh.close();
  }
}

function reason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ? `${err.code}: cannot open (${err.message})` : err.message;
}

/** Opens a model path the way a loader would; throws HttpError 404/422 naming the bad file. */
async function checkModel(modelPath: string): Promise<{ files: number; tensors: number }> {
  const abs = path.resolve(modelPath);
  const st = await stat(abs).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') throw new HttpError(404, `model path not found: ${modelPath}`);
    throw new HttpError(422, `${modelPath}: ${reason(e)}`);
  });
  let root = abs;
  let files: string[];
  if (st.isDirectory()) {
    files = await findSafetensors(abs).catch((e: unknown) => {
      throw new HttpError(422, `${modelPath}: ${reason(e)}`);
    });
    if (files.length === 0) throw new HttpError(422, `no .safetensors file under ${modelPath}`);
  } else if (st.isFile() && abs.toLowerCase().endsWith('.safetensors')) {
    root = path.dirname(abs);
    files = [path.basename(abs)];
  } else {
    throw new HttpError(422, `${modelPath}: neither a directory nor a .safetensors file`);
  }
  let tensors = 0;
  for (const f of files) {
    try {
      tensors += await checkFile(path.join(root, f));
    } catch (e) {
      throw new HttpError(422, `${f}: ${reason(e)}`);
    }
  }
  return { files: files.length, tensors };
}

/** Whitespace words: the stand-in's notion of a token, enough for deterministic usage numbers. */
const words = (s: string): string[] => s.split(/\s+/).filter(Boolean);

export async function startStandin(opts: { host?: string; port?: number } = {}): Promise<Standin> {
  const host = opts.host ?? '127.0.0.1';
  const models = new Map<string, StandinModel>();
  let active: string | null = null;
  let faults: StandinFaults = {};
  let calls: StandinCall[] = [];
  let completions = 0;
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();

  const state = (): StandinState => structuredClone({ active, models: [...models.values()], calls });
  const setFaults = (f: StandinFaults): void => {
    faults = { ...f };
  };
  const needActive = (): string => {
    if (active === null) throw new HttpError(503, 'no model is active');
    return active;
  };

  const routes: Record<string, Partial<Record<string, Handler>>> = {
    '/health': { GET: () => ok({ status: 'ok', active_model: active, models: models.size }) },
    '/models': {
      GET: () =>
        ok({
          models: [...models.values()].map((m) => ({ name: m.name, path: m.path, active: m.name === active, registered_at: m.registeredAt })),
          active,
        }),
    },
    '/models/register': {
      POST: async (body) => {
        const b = fields(body);
        const name = str(b, 'name');
        const modelPath = str(b, 'path');
        const r = await checkModel(modelPath);
        models.set(name, { name, path: modelPath, registeredAt: new Date().toISOString() });
        return ok({ registered: name, ...r });
      },
    },
    '/models/set_active': {
      POST: async (body) => {
        const name = str(fields(body), 'name');
        const m = models.get(name);
        if (!m) throw new HttpError(404, `model not registered: ${name}`);
        await checkModel(m.path);
        active = name;
        return ok({ active: name });
      },
    },
    '/generate': {
      POST: (body) => {
        const b = fields(body);
        const prompt = str(b, 'prompt');
        const max = optInt(b, 'max_tokens', 1, 1_000_000) ?? 16;
        const model = needActive();
        const out = words(prompt).slice(0, max);
        return ok({ model, text: out.join(' '), tokens: out.length });
      },
    },
    '/v1/chat/completions': {
      POST: (body) => {
        const b = fields(body);
        const msgs = b.messages;
        if (msgs === undefined) throw invalid('messages', 'missing', 'Field required');
        if (!Array.isArray(msgs) || msgs.length === 0 || !msgs.every((m) => isObject(m) && typeof m.role === 'string' && typeof m.content === 'string')) {
          throw invalid('messages', 'list_type', 'Input should be a non-empty list of {role, content} strings');
        }
        const max = optInt(b, 'max_tokens', 1, 1_000_000) ?? 16;
        const model = needActive();
        const list = msgs as { role: string; content: string }[];
        const lastUser = [...list].reverse().find((m) => m.role === 'user') ?? list[list.length - 1];
        const out = words(lastUser.content).slice(0, max);
        const promptTokens = list.reduce((n, m) => n + words(m.content).length, 0);
        return ok({
          id: `chatcmpl-standin-${++completions}`,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: out.join(' ') }, finish_reason: 'stop' }],
          usage: { prompt_tokens: promptTokens, completion_tokens: out.length, total_tokens: promptTokens + out.length },
        });
      },
    },
    '/__standin/faults': {
      POST: (body) => {
        setFaults(validFaults(body));
        return ok(faults);
      },
    },
    '/__standin/state': { GET: () => ok(state()) },
  };
  const faultOf: Record<string, keyof StandinFaults> = { '/health': 'health', '/models/register': 'register', '/models/set_active': 'setActive' };

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  /** Reads the body up to the cap; undefined when empty; HttpError 400/413. */
  const readBody = (req: http.IncomingMessage): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > MAX_BODY_BYTES) {
        reject(new HttpError(413, `request body exceeds ${MAX_BODY_BYTES} bytes`));
        return;
      }
      const parts: Buffer[] = [];
      let size = 0;
      let over = false;
      req.on('data', (d: Buffer) => {
        if (over) return;
        size += d.length;
        if (size > MAX_BODY_BYTES) {
          over = true;
          reject(new HttpError(413, `request body exceeds ${MAX_BODY_BYTES} bytes`));
        } else parts.push(d);
      });
      // A client hanging up mid-body ('error' ECONNRESET, or a bare 'close'): recorded as
      // nginx's 499; nothing is answered.
      const gone = (): void => reject(new HttpError(499, 'client closed request'));
      req.on('error', gone);
      req.on('close', () => {
        if (!req.complete) gone();
      });
      req.on('end', () => {
        if (over) return;
        const text = Buffer.concat(parts).toString('utf8');
        if (text.trim() === '') return resolve(undefined);
        try {
          resolve(JSON.parse(text) as unknown);
        } catch (e) {
          reject(new HttpError(400, `request body is not valid JSON: ${(e as Error).message}`));
        }
      });
    });

  const send = (req: http.IncomingMessage, res: http.ServerResponse, a: Answer, recorded: unknown): void => {
    calls.push({ method: req.method ?? '', path: (req.url ?? '').split('?')[0], status: a.status, ...(recorded === undefined ? {} : { body: recorded }) });
    if (calls.length > MAX_CALLS) calls = calls.slice(-MAX_CALLS);
    if (res.writableEnded || res.destroyed) return; // the client hung up; nothing to answer
    const text = JSON.stringify(a.body);
    const tooBig = a.status === 413;
    res.writeHead(a.status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...(tooBig ? { connection: 'close' } : {}),
    });
    res.end(text);
    if (tooBig) {
      // Keep reading (and discarding) briefly so the client sees the 413 rather than a reset, then drop it.
      req.resume();
      const t = setTimeout(() => req.socket.destroy(), 1000);
      t.unref();
    }
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = (req.url ?? '/').split('?')[0];
    const method = req.method ?? 'GET';
    let body: unknown;
    try {
      const route = routes[url];
      if (!route) {
        req.resume();
        throw new HttpError(404, 'Not Found');
      }
      const handler = route[method];
      if (!handler) {
        req.resume();
        throw new HttpError(405, 'Method Not Allowed');
      }
      if (method === 'GET') req.resume();
      else body = await readBody(req);
      if (!url.startsWith('/__standin/')) {
        if (faults.delayMs) await sleep(faults.delayMs);
        const status = faultOf[url] && faults[faultOf[url]];
        if (status) throw new HttpError(status, `injected fault: ${method} ${url} answers ${status}`);
      }
      send(req, res, await handler(body), body);
    } catch (e) {
      if (e instanceof HttpError) send(req, res, { status: e.status, body: { detail: e.detail } }, body);
      else send(req, res, { status: 500, body: { detail: `internal error: ${(e as Error).message}` } }, body);
    }
  };

  const server = http.createServer((req, res) => {
    res.on('error', () => undefined); // a client gone mid-answer is not our failure
    void handle(req, res);
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}`,
    port,
    state,
    setFaults,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => resolve());
        // Keep-alive and delayed requests would otherwise hold close() open.
        for (const s of sockets) s.destroy();
      }),
  };
}

function parseArgs(argv: string[]): { host: string; port: number } {
  let host = '127.0.0.1';
  let port = 8765;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--port') {
      port = Number(value());
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: not a port number`);
    } else if (flag === '--host') host = value();
    else throw new Error(`unknown argument ${argv[i]} (usage: inference-standin [--port 8765] [--host 127.0.0.1])`);
  }
  return { host, port };
}

async function main(): Promise<void> {
  let args: { host: string; port: number };
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`inference stand-in: ${(e as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  // Signals are taken before listening, so one that arrives early still stops cleanly.
  const stopped = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  let s: Standin;
  try {
    s = await startStandin(args);
  } catch (e) {
    process.stderr.write(`inference stand-in: cannot listen on ${args.host}:${args.port}: ${(e as Error).message}\n`);
    process.exitCode = 1;
    return;
  }
  process.stdout.write(`inference stand-in: listening on ${s.url}\n`);
  const sig = await stopped;
  await s.close();
  process.stderr.write(`inference stand-in: ${sig}, stopped\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  void main();
}
