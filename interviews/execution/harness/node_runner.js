// Mockroom's JavaScript harness. Runs INSIDE the sandbox, on its /usr/bin/node (the protocol:
// interviews/execution/harness/__init__.py).
//
// The candidate's code runs as the script `solution.js` in a fresh vm context (its own globals,
// with a console whose output is captured per case); then `entry_point(...args)` is called once
// per case. The vm context is for a clean global scope and line numbers, not for security: the
// sandbox around this process is the boundary.
'use strict';

const fs = require('fs');
const util = require('util');
const vm = require('vm');

const SOLUTION = 'solution.js';
const PRINT_CAP = 4096; // characters of console output kept per case

class OutputLimit extends Error {}
class Unsupported extends Error {}

const protocol = {
  budget: 1 << 20,
  sent: 0,
  encode(message) {
    return Buffer.from(JSON.stringify(message) + '\n', 'utf8');
  },
  send(message) {
    const data = Buffer.isBuffer(message) ? message : this.encode(message);
    this.sent += data.length;
    let offset = 0;
    while (offset < data.length) {
      try {
        offset += fs.writeSync(1, data, offset, data.length - offset);
      } catch (error) {
        if (error.code !== 'EAGAIN') {
          throw error;
        }
        // Code that reached process.stdout made the pipe non-blocking: wait for room.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
    }
  },
  fits(data) {
    return this.sent + data.length + 512 <= this.budget;
  },
};

const capture = {
  budget: 1 << 20,
  total: 0,
  parts: [],
  kept: 0,
  dropped: 0,
  write(text) {
    this.total += text.length;
    if (this.total > this.budget) {
      throw new OutputLimit('Output limit exceeded: the code printed too much');
    }
    const room = PRINT_CAP - this.kept;
    if (room > 0) {
      this.parts.push(text.slice(0, room));
      this.kept += Math.min(room, text.length);
    }
    this.dropped += Math.max(0, text.length - Math.max(room, 0));
  },
  take() {
    let text = this.parts.join('');
    if (this.dropped) {
      text += `\n... (${this.dropped} more characters not shown)`;
    }
    this.parts = [];
    this.kept = 0;
    this.dropped = 0;
    return text;
  },
};

function print(...args) {
  capture.write(util.format(...args) + '\n');
}

const sandboxConsole = {
  log: print,
  info: print,
  warn: print,
  error: print,
  debug: print,
  trace: print,
  table: print,
  dir: (value) => print(util.inspect(value)),
};

function isErrorLike(error) {
  return error !== null && typeof error === 'object' && typeof error.message === 'string';
}

function describe(error) {
  if (error instanceof OutputLimit) {
    return error.message;
  }
  if (isErrorLike(error)) {
    const name = typeof error.name === 'string' && error.name ? error.name : 'Error';
    return (error.message ? `${name}: ${error.message}` : name).slice(0, 1000);
  }
  let text;
  try {
    text = String(error);
  } catch {
    text = typeof error;
  }
  return `Uncaught ${text}`.slice(0, 1000);
}

function lineOf(error) {
  if (!isErrorLike(error) || typeof error.stack !== 'string') {
    return null;
  }
  // A syntax error's stack starts "solution.js:3"; a runtime error's frames read
  // "at f (solution.js:3:9)", the deepest first: the first match is the candidate's line.
  const match = /solution\.js:(\d+)/.exec(error.stack);
  return match ? Number(match[1]) : null;
}

function isMemoryError(error) {
  return isErrorLike(error) && /allocation failed|out of memory/i.test(error.message);
}

const HINTS = {
  '[object Set]': 'Set (return an array: [...set])',
  '[object Map]': 'Map (return a plain object or an array of pairs)',
  '[object Date]': 'Date (return a string or a number)',
  '[object RegExp]': 'RegExp',
};

function toJSON(value, depth, seen) {
  if (depth > 200) {
    throw new Unsupported('Return value not supported: nested more than 200 levels deep');
  }
  if (value === null || value === undefined) {
    return null;
  }
  switch (typeof value) {
    case 'boolean':
    case 'string':
      return value;
    case 'number':
      if (!Number.isFinite(value)) {
        throw new Unsupported(`Return value not supported: ${value} is not a JSON number`);
      }
      return value;
    case 'bigint':
      throw new Unsupported('Return type not supported: BigInt (return a Number)');
    case 'function':
    case 'symbol':
      throw new Unsupported(`Return type not supported: ${typeof value}`);
    default:
      break;
  }
  if (seen.has(value)) {
    throw new Unsupported('Return value not supported: it contains itself');
  }
  seen.add(value);
  try {
    if (Array.isArray(value)) {
      return Array.from(value, (item) => toJSON(item, depth + 1, seen));
    }
    const tag = Object.prototype.toString.call(value);
    if (tag !== '[object Object]') {
      const kind = HINTS[tag] || (ArrayBuffer.isView(value)
        ? `${tag.slice(8, -1)} (return a plain array: Array.from(...))`
        : tag.slice(8, -1));
      throw new Unsupported(`Return type not supported: ${kind}`);
    }
    const proto = Object.getPrototypeOf(value);
    if (proto !== null && Object.getPrototypeOf(proto) !== null) {
      const name = (proto.constructor && proto.constructor.name) || 'object';
      throw new Unsupported(`Return type not supported: ${name} (return a plain object)`);
    }
    const result = {};
    for (const key of Object.keys(value)) {
      if (value[key] !== undefined) {
        result[key] = toJSON(value[key], depth + 1, seen);
      }
    }
    return result;
  } finally {
    seen.delete(value);
  }
}

let parseArgs = JSON.parse;

function load(code, entryPoint) {
  const module = { exports: {} };
  const context = vm.createContext({ console: sandboxConsole, module, exports: module.exports });
  // Arguments are parsed by the context's own JSON, so that `args instanceof Array` holds in the
  // candidate's code (each vm context has its own Array).
  parseArgs = vm.runInContext('JSON.parse', context);
  const script = new vm.Script(code, { filename: SOLUTION });
  script.runInContext(context);
  if (!/^[A-Za-z_$][\w$]*$/.test(entryPoint)) {
    return null;
  }
  // Declarations with const/let/class are not properties of the global object: ask the
  // context's global scope by name.
  let fn = new vm.Script(`typeof ${entryPoint} === 'function' ? ${entryPoint} : undefined`)
    .runInContext(context);
  if (typeof fn !== 'function') {
    const exported = module.exports;
    fn = typeof exported === 'function' ? exported : exported && exported[entryPoint];
  }
  return typeof fn === 'function' ? fn : null;
}

async function main() {
  const request = JSON.parse(fs.readFileSync(0, 'utf8'));
  const limits = request.limits || {};
  protocol.budget = capture.budget = Number(limits.output_bytes || 1 << 20);
  process.on('unhandledRejection', () => {}); // a promise the candidate left failing

  let fn;
  try {
    fn = load(request.code, request.entry_point);
  } catch (error) {
    const message = { compiled: false, error: describe(error), line: lineOf(error) };
    if (isMemoryError(error)) {
      message.limit = 'memory';
    }
    protocol.send(message);
    return;
  }
  if (fn === null) {
    const error = `ReferenceError: no function named '${request.entry_point}' is defined ` +
      "(keep the starter's name)";
    protocol.send({ compiled: false, error, line: null });
    return;
  }
  protocol.send({ compiled: true });

  for (let index = 0; index < request.cases.length; index += 1) {
    const args = parseArgs(JSON.stringify(request.cases[index].args || []));
    const result = { case: index };
    let value;
    const started = performance.now();
    try {
      value = fn(...args);
      if (value !== null && typeof value === 'object' && typeof value.then === 'function') {
        value = await value;
      }
      result.ok = true;
    } catch (error) {
      result.ok = false;
      result.error = describe(error);
      result.line = error instanceof OutputLimit ? null : lineOf(error);
      if (error instanceof OutputLimit || capture.total > capture.budget) {
        result.limit = 'output';
      } else if (isMemoryError(error)) {
        result.limit = 'memory';
      }
    }
    result.ms = Math.round((performance.now() - started) * 1000) / 1000;
    if (result.ok && capture.total > capture.budget) {
      Object.assign(result, { ok: false, error: 'Output limit exceeded', limit: 'output' });
    }
    if (result.limit) {
      protocol.send(result);
      return;
    }
    if (result.ok) {
      try {
        result.value = toJSON(value, 0, new Set());
      } catch (error) {
        result.ok = false;
        result.error = error instanceof Unsupported ? error.message : describe(error);
      }
    }
    result.stdout = capture.take();
    const data = protocol.encode(result);
    if (!protocol.fits(data)) {
      const error = `Output limit exceeded: the result is ${data.length} bytes as JSON`;
      protocol.send({ case: index, ok: false, error, limit: 'output' });
      return;
    }
    protocol.send(data);
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`harness: ${(error && error.stack) || error}\n`);
    process.exit(70);
  },
);
