// A small stand-in for the `vscode` module, enough to run the extension and
// vscode-languageclient outside VS Code. The parts the smoke test inspects
// are real; every other API is a permissive stub that accepts any call.
'use strict';

function stub(name) {
  const props = {};
  return new Proxy(function () {}, {
    get(_target, key) {
      if (key === 'then') return undefined; // not a thenable
      if (key === Symbol.iterator) return function* () {};
      if (key === Symbol.toPrimitive) return () => 0;
      if (typeof key === 'symbol') return undefined;
      if (key === 'dispose') return () => {};
      if (key === 'prototype') return Object.prototype;
      if (!(key in props)) props[key] = stub(`${name}.${String(key)}`);
      return props[key];
    },
    apply: () => stub(`${name}()`),
    construct: () => stub(`new ${name}`),
  });
}

class Disposable {
  constructor(fn) { this.fn = fn; }
  dispose() { if (this.fn) this.fn(); this.fn = undefined; }
  static from(...items) { return new Disposable(() => items.forEach((d) => d && d.dispose && d.dispose())); }
}

class EventEmitter {
  constructor() {
    this.listeners = [];
    this.event = (listener) => {
      this.listeners.push(listener);
      return new Disposable(() => { this.listeners = this.listeners.filter((l) => l !== listener); });
    };
  }
  fire(value) { this.listeners.slice().forEach((l) => l(value)); }
  dispose() { this.listeners = []; }
}

class Uri {
  constructor(scheme, path) { this.scheme = scheme; this.path = path; this.fsPath = path; }
  static parse(text) { const m = /^([a-z]+):\/\/(.*)$/.exec(text); return m ? new Uri(m[1], m[2]) : new Uri('file', text); }
  static file(path) { return new Uri('file', path); }
  with() { return this; }
  toString() { return `${this.scheme}://${this.path}`; }
}
class Position { constructor(line, character) { this.line = line; this.character = character; } }
class Range {
  constructor(a, b, c, d) {
    if (typeof a === 'number') { this.start = new Position(a, b); this.end = new Position(c, d); } else { this.start = a; this.end = b; }
  }
}
class Location { constructor(uri, range) { this.uri = uri; this.range = range; } }

const state = {
  settings: {},
  pythonExtension: undefined,
  commands: new Map(),
  executed: [],
  output: [],
  configEmitter: new EventEmitter(),
};

function lookup(root, dotted) {
  return dotted.split('.').reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), root);
}

function getConfiguration(section) {
  const root = (section ? lookup(state.settings, section) : state.settings) || {};
  const config = JSON.parse(JSON.stringify(root));
  const hidden = (key, value) => Object.defineProperty(config, key, { enumerable: false, value });
  hidden('get', (key, fallback) => { const v = lookup(root, key); return v === undefined ? fallback : v; });
  hidden('has', (key) => lookup(root, key) !== undefined);
  hidden('inspect', () => undefined);
  hidden('update', async () => {});
  return config;
}

const channel = (name) => ({
  name,
  append: (text) => state.output.push(String(text)),
  appendLine: (text) => state.output.push(`${text}\n`),
  replace() {}, clear() {}, show() {}, hide() {}, dispose() {},
});

const api = {
  version: '1.85.0',
  Disposable, EventEmitter, Uri, Position, Range, Location,
  env: { appName: 'fake-vscode', language: 'en', machineId: 'm', sessionId: 's', uriScheme: 'vscode', appRoot: '/', uiKind: 1 },
  workspace: {
    workspaceFolders: undefined,
    textDocuments: [],
    getConfiguration,
    onDidChangeConfiguration: state.configEmitter.event,
    openTextDocument: async (options) => ({ fake: 'document', options }),
  },
  window: {
    createOutputChannel: channel,
    showErrorMessage: async (m) => { state.output.push(`[error message] ${m}\n`); },
    showWarningMessage: async (m) => { state.output.push(`[warning message] ${m}\n`); },
    showInformationMessage: async (m) => { state.output.push(`[information message] ${m}\n`); },
    showTextDocument: async (document) => { state.executed.push(['showTextDocument', document]); },
  },
  commands: {
    registerCommand(id, callback) {
      if (state.commands.has(id)) throw new Error(`command already registered: ${id}`);
      state.commands.set(id, callback);
      return new Disposable(() => state.commands.delete(id));
    },
    async executeCommand(id, ...args) {
      if (state.commands.has(id)) return state.commands.get(id)(...args);
      state.executed.push([id, ...args]);
      return undefined;
    },
  },
  extensions: {
    all: [],
    getExtension: (id) => (id === 'ms-python.python' ? state.pythonExtension : undefined),
  },
  __state: state,
};

function wrap(target, name) {
  return new Proxy(target, {
    get(t, key) {
      if (key in t) {
        const v = t[key];
        const plain = v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Map) && key !== '__state';
        return plain ? wrap(v, `${name}.${String(key)}`) : v;
      }
      if (key === 'then' || typeof key === 'symbol') return undefined;
      return stub(`${name}.${String(key)}`);
    },
  });
}

module.exports = wrap(api, 'vscode');
