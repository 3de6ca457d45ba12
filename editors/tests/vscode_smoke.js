// Smoke test of editors/vscode/out/extension.js with a fake `vscode` module
// and the stand-in server. Usage: node vscode_smoke.js PYTHON
'use strict';
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const Module = require('module');

const fakePath = path.join(__dirname, 'fake_vscode.js');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return request === 'vscode' ? fakePath : resolve.call(this, request, ...rest);
};

const python = process.argv[2] || 'python3';
const stub = path.join(__dirname, 'stub_server.py');
const log = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'alpine-vscode-')), 'stub.log');
process.env.STUB_LOG = log;

const vscode = require('vscode');
const state = vscode.__state;
const ext = require(path.join(__dirname, '..', 'vscode', 'out', 'extension.js'));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const entries = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);
const outputText = () => state.output.join('');
async function until(pred, what, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (pred()) return; await sleep(50); }
  throw new Error(`timed out waiting for ${what}\n--- output ---\n${outputText()}`);
}

const results = [];
async function check(name, fn) {
  try { await fn(); results.push([name, true]); console.log(`ok ${name}`); }
  catch (e) { results.push([name, false]); console.log(`FAIL ${name}: ${e.stack || e}`); }
}

(async () => {
  state.settings = {
    alpine: {
      threshold: 0.6, severity: 'hint', pruning: { alpha: 1.5, layers: 'even', mode: 'drop' },
      server: { command: [python, stub] }, trace: { server: 'off' },
    },
  };
  const context = { subscriptions: [] };
  ext.activate(context);

  await check('vscode: server starts with alpine.server.command', async () => {
    await until(() => outputText().includes('alpine-lsp server running'), 'server start');
    assert.ok(outputText().includes('(alpine.server.command)'));
  });
  await check('vscode: initializationOptions are the alpine settings without client-only keys', async () => {
    const init = entries().find((e) => e.kind === 'initialize');
    assert.deepStrictEqual(init.data.initializationOptions, {
      threshold: 0.6, severity: 'hint', pruning: { alpha: 1.5, layers: 'even', mode: 'drop' },
    });
  });
  await check('vscode: workspace/configuration answer has no client-only keys', async () => {
    await until(() => entries().some((e) => e.kind === 'configuration'), 'configuration');
    const answer = entries().find((e) => e.kind === 'configuration').data[0];
    assert.strictEqual(answer.threshold, 0.6);
    assert.ok(!('server' in answer) && !('trace' in answer), JSON.stringify(answer));
  });
  await check('vscode: commands registered', async () => {
    for (const id of ['alpine.restartServer', 'alpine.showStats', 'alpine.showSimilar']) {
      assert.ok(state.commands.has(id), id);
    }
  });
  await check('vscode: alpine.showStats opens the JSON', async () => {
    await vscode.commands.executeCommand('alpine.showStats');
    const shown = state.executed.find((e) => e[0] === 'showTextDocument');
    assert.ok(shown, 'no document shown');
    assert.strictEqual(shown[1].options.language, 'json');
    assert.deepStrictEqual(JSON.parse(shown[1].options.content), { documents: 1, stub: true });
  });
  await check('vscode: alpine.showSimilar result goes to the references peek', async () => {
    await vscode.commands.executeCommand('alpine.showSimilar', 'file:///tmp/x.py', 2);
    const peek = state.executed.find((e) => e[0] === 'editor.action.showReferences');
    assert.ok(peek, 'no peek');
    assert.strictEqual(peek[2].line, 2);
    assert.strictEqual(peek[3].length, 1);
    assert.strictEqual(peek[3][0].range.start.line, 6);
  });
  await check('vscode: a settings change is sent without client-only keys', async () => {
    state.settings.alpine.threshold = 0.9;
    state.configEmitter.fire({ affectsConfiguration: (s) => s === 'alpine' || s === 'alpine.threshold' });
    await until(() => entries().some((e) => e.kind === 'didChangeConfiguration'), 'didChangeConfiguration');
    const sent = entries().find((e) => e.kind === 'didChangeConfiguration').data.alpine;
    assert.strictEqual(sent.threshold, 0.9);
    assert.ok(!('server' in sent) && !('trace' in sent), JSON.stringify(sent));
  });
  await check('vscode: restart starts a new server with the new settings', async () => {
    await vscode.commands.executeCommand('alpine.restartServer');
    await until(() => entries().filter((e) => e.kind === 'initialize').length === 2, 'second initialize');
    const second = entries().filter((e) => e.kind === 'initialize')[1];
    assert.strictEqual(second.data.initializationOptions.threshold, 0.9);
  });
  await ext.deactivate();
  context.subscriptions.forEach((d) => d.dispose()); // as VS Code does after deactivate

  await check('vscode: without a command, a Python extension interpreter lacking alpine_lsp falls back to PATH', async () => {
    state.output.length = 0;
    state.settings = { alpine: {} };
    state.pythonExtension = {
      isActive: false,
      activate: async () => ({
        ready: Promise.resolve(),
        environments: {
          getActiveEnvironmentPath: () => ({ id: 'p', path: '/nonexistent/python' }),
          resolveEnvironment: async (env) => ({ executable: { uri: { fsPath: env.path } } }),
        },
      }),
    };
    const savedPath = process.env.PATH;
    process.env.PATH = '/nonexistent';
    const second = { subscriptions: [] };
    ext.activate(second);
    await until(() => outputText().includes('could not start'), 'start failure');
    process.env.PATH = savedPath;
    assert.ok(outputText().includes('cannot import alpine_lsp'), outputText());
    assert.ok(outputText().includes('Starting alpine-lsp --stdio (PATH)'), outputText());
    await ext.deactivate();
    second.subscriptions.forEach((d) => d.dispose());
  });

  const failed = results.filter((r) => !r[1]).length;
  console.log(`vscode: ${results.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.log(`FAIL vscode smoke: ${e.stack || e}`); process.exit(1); });
