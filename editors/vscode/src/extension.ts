// VS Code client for the alpine-lsp language server.
//
// The server is found in this order:
//   1. the `alpine.server.command` setting, used as the full command line;
//   2. `python -m alpine_lsp --stdio` with the interpreter selected in the
//      Python extension (ms-python.python), if that interpreter has the
//      `alpine_lsp` package;
//   3. `alpine-lsp --stdio` from PATH.

import { execFile } from 'child_process';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  Executable,
  LanguageClient,
  LanguageClientOptions,
  Location as LspLocation,
  ServerOptions,
  State,
} from 'vscode-languageclient/node';

const CLIENT_ID = 'alpine';
const CLIENT_NAME = 'alpine-lsp';
const SECTION = 'alpine';

export const LANGUAGES = [
  'c',
  'cpp',
  'java',
  'python',
  'javascript',
  'javascriptreact',
  'typescript',
  'typescriptreact',
  'go',
  'rust',
];

// Settings under `alpine.*` that only the client reads; they are not sent to the server.
const CLIENT_ONLY_KEYS = ['server', 'trace'];

interface ServerCommand {
  command: string;
  args: string[];
  origin: string;
}

let client: LanguageClient | undefined;
let output: vscode.OutputChannel;
// True when alpine.server.command chose the server; interpreter changes then do not matter.
let usesConfiguredCommand = false;
// Serialises start/stop/restart so that quick repeated restarts do not overlap.
let lifecycle: Promise<void> = Promise.resolve();

export function activate(context: vscode.ExtensionContext): void {
  output = vscode.window.createOutputChannel(CLIENT_NAME);
  context.subscriptions.push(output);

  context.subscriptions.push(
    vscode.commands.registerCommand('alpine.restartServer', () => enqueue(restart)),
    vscode.commands.registerCommand('alpine.showStats', showStats),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration(`${SECTION}.server`)) {
        output.appendLine('alpine.server.command changed; restarting the server.');
        void enqueue(restart);
      } else if (event.affectsConfiguration(SECTION)) {
        void pushSettings();
      }
    }),
  );

  void watchPythonInterpreter(context);
  void enqueue(start);
}

export function deactivate(): Thenable<void> | undefined {
  return enqueue(stop);
}

function enqueue(step: () => Promise<void>): Promise<void> {
  lifecycle = lifecycle.then(step, step).catch((error: unknown) => {
    output.appendLine(`alpine-lsp: ${describeError(error)}`);
  });
  return lifecycle;
}

async function start(): Promise<void> {
  const server = await resolveServerCommand();
  usesConfiguredCommand = server.origin === 'alpine.server.command';
  output.appendLine(`Starting ${[server.command, ...server.args].join(' ')} (${server.origin})`);

  const folder = vscode.workspace.workspaceFolders?.[0];
  const executable: Executable = {
    command: server.command,
    args: server.args,
    // No `transport`: the language client would append its own `--stdio`.
    options: folder && folder.uri.scheme === 'file' ? { cwd: folder.uri.fsPath } : undefined,
  };
  const serverOptions: ServerOptions = { run: executable, debug: executable };

  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.flatMap((language) => [
      { scheme: 'file', language },
      { scheme: 'untitled', language },
    ]),
    initializationOptions: serverSettings(),
    // No `synchronize.configurationSection`: it would also send the client-only keys.
    // pushSettings() sends workspace/didChangeConfiguration itself.
    outputChannel: output,
    traceOutputChannel: output,
    middleware: {
      workspace: {
        // Answer workspace/configuration for "alpine" without the client-only keys.
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          if (!Array.isArray(result)) {
            return result;
          }
          return result.map((value, index) =>
            params.items[index]?.section === SECTION ? stripClientKeys(value) : value,
          );
        },
      },
      // The server's alpine.showSimilar (uri, line) returns locations; show them in a peek view.
      executeCommand: async (command, args, next) => {
        const result = await next(command, args);
        if (command === 'alpine.showSimilar') {
          await peekSimilar(args, result);
        }
        return result;
      },
    },
  };

  const newClient = new LanguageClient(CLIENT_ID, CLIENT_NAME, serverOptions, clientOptions);
  newClient.onDidChangeState((event) => {
    if (event.newState === State.Stopped) {
      output.appendLine('alpine-lsp server stopped.');
    } else if (event.newState === State.Running) {
      output.appendLine('alpine-lsp server running.');
    }
  });
  client = newClient;
  try {
    await newClient.start();
  } catch (error) {
    const message =
      `alpine-lsp: could not start "${[server.command, ...server.args].join(' ')}": ` +
      `${describeError(error)}. Install the alpine-lsp Python package or set alpine.server.command.`;
    output.appendLine(message);
    void vscode.window.showErrorMessage(message, 'Open Settings').then((choice) => {
      if (choice === 'Open Settings') {
        void vscode.commands.executeCommand('workbench.action.openSettings', 'alpine.server.command');
      }
    });
  }
}

/** Send the current server settings with workspace/didChangeConfiguration. */
async function pushSettings(): Promise<void> {
  await lifecycle;
  const current = client;
  if (!current || !current.isRunning()) {
    return;
  }
  try {
    await current.sendNotification(DidChangeConfigurationNotification.type, {
      settings: { [SECTION]: serverSettings() },
    });
  } catch (error) {
    output.appendLine(`Sending the settings failed: ${describeError(error)}`);
  }
}

async function stop(): Promise<void> {
  const current = client;
  client = undefined;
  if (!current) {
    return;
  }
  try {
    if (current.isRunning()) {
      await current.stop();
    }
  } catch (error) {
    output.appendLine(`Stopping the server failed: ${describeError(error)}`);
  }
  try {
    await current.dispose();
  } catch {
    // Already stopped or never started.
  }
}

async function restart(): Promise<void> {
  await stop();
  await start();
}

async function showStats(): Promise<void> {
  await lifecycle;
  if (!client || !client.isRunning()) {
    void vscode.window.showWarningMessage('alpine-lsp: the server is not running.');
    return;
  }
  try {
    const stats = await client.sendRequest('alpine/stats', {});
    const text = JSON.stringify(stats, null, 2);
    output.appendLine(`alpine/stats: ${text}`);
    const document = await vscode.workspace.openTextDocument({ language: 'json', content: text });
    await vscode.window.showTextDocument(document, { preview: true });
  } catch (error) {
    void vscode.window.showErrorMessage(`alpine-lsp: alpine/stats failed: ${describeError(error)}`);
  }
}

async function peekSimilar(args: unknown[], result: unknown): Promise<void> {
  const current = client;
  if (!current || !Array.isArray(result)) {
    return;
  }
  const [uriArg, lineArg] = args;
  if (typeof uriArg !== 'string' || typeof lineArg !== 'number') {
    return;
  }
  const locations = (result as unknown[])
    .filter(
      (item): item is LspLocation =>
        typeof item === 'object' &&
        item !== null &&
        typeof (item as LspLocation).uri === 'string' &&
        typeof (item as LspLocation).range === 'object',
    )
    .map((item) => current.protocol2CodeConverter.asLocation(item));
  if (locations.length === 0) {
    void vscode.window.showInformationMessage('alpine-lsp: no similar functions found.');
    return;
  }
  const uri = vscode.Uri.parse(uriArg);
  const position = new vscode.Position(Math.max(0, Math.floor(lineArg)), 0);
  await vscode.commands.executeCommand('editor.action.showReferences', uri, position, locations);
}

/** The `alpine` settings the server reads (everything except client-only keys). */
function serverSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration(SECTION);
  // Round-trip through JSON to get a plain object from the configuration proxy.
  return stripClientKeys(JSON.parse(JSON.stringify(config)));
}

function stripClientKeys(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return {};
  }
  const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const key of CLIENT_ONLY_KEYS) {
    delete copy[key];
  }
  return copy;
}

async function resolveServerCommand(): Promise<ServerCommand> {
  const configured = vscode.workspace
    .getConfiguration(SECTION)
    .get<string[] | null>('server.command', null);
  if (Array.isArray(configured) && configured.length > 0 && configured.every((part) => typeof part === 'string')) {
    return { command: configured[0], args: configured.slice(1), origin: 'alpine.server.command' };
  }
  if (configured !== null && configured !== undefined) {
    output.appendLine('Ignoring alpine.server.command: it must be a non-empty array of strings.');
  }

  const python = await pythonFromExtension();
  if (python) {
    if (await hasAlpineLsp(python.command, python.args)) {
      return {
        command: python.command,
        args: [...python.args, '-m', 'alpine_lsp', '--stdio'],
        origin: `Python extension interpreter ${python.command}`,
      };
    }
    output.appendLine(
      `The selected Python interpreter (${python.command}) cannot import alpine_lsp; trying alpine-lsp on PATH.`,
    );
  }
  return { command: 'alpine-lsp', args: ['--stdio'], origin: 'PATH' };
}

interface PythonCommand {
  command: string;
  args: string[];
}

// The parts of the ms-python.python API used here; every member is optional
// because older and newer versions of that extension expose different parts.
interface PythonExtensionApi {
  ready?: Promise<void>;
  environments?: {
    getActiveEnvironmentPath?(resource?: vscode.Uri): { id?: string; path?: string } | undefined;
    resolveEnvironment?(
      environment: { id?: string; path?: string } | string,
    ): Promise<{ executable?: { uri?: vscode.Uri } } | undefined>;
    onDidChangeActiveEnvironmentPath?: vscode.Event<unknown>;
  };
  settings?: {
    getExecutionDetails?(resource?: vscode.Uri): { execCommand?: string[] } | undefined;
  };
}

async function pythonExtensionApi(): Promise<PythonExtensionApi | undefined> {
  const extension = vscode.extensions.getExtension<PythonExtensionApi>('ms-python.python');
  if (!extension) {
    return undefined;
  }
  try {
    const api = extension.isActive ? extension.exports : await extension.activate();
    if (api?.ready) {
      await api.ready;
    }
    return api;
  } catch (error) {
    output.appendLine(`Could not use the Python extension: ${describeError(error)}`);
    return undefined;
  }
}

async function pythonFromExtension(): Promise<PythonCommand | undefined> {
  const api = await pythonExtensionApi();
  if (!api) {
    return undefined;
  }
  const resource = vscode.workspace.workspaceFolders?.[0]?.uri;

  try {
    const envPath = api.environments?.getActiveEnvironmentPath?.(resource);
    if (envPath?.path) {
      let executable: string | undefined;
      try {
        const resolved = await api.environments?.resolveEnvironment?.(envPath);
        executable = resolved?.executable?.uri?.fsPath;
      } catch (error) {
        output.appendLine(`Python extension could not resolve ${envPath.path}: ${describeError(error)}`);
      }
      // The environment path may be a folder (e.g. some conda environments); only
      // fall back to it when nothing better is known.
      return { command: executable ?? envPath.path, args: [] };
    }
  } catch (error) {
    output.appendLine(`Python extension environments API failed: ${describeError(error)}`);
  }

  try {
    const execCommand = api.settings?.getExecutionDetails?.(resource)?.execCommand;
    if (Array.isArray(execCommand) && execCommand.length > 0 && typeof execCommand[0] === 'string') {
      return { command: execCommand[0], args: execCommand.slice(1) };
    }
  } catch (error) {
    output.appendLine(`Python extension settings API failed: ${describeError(error)}`);
  }
  return undefined;
}

/** Whether `python -c ...` finds the alpine_lsp package without importing it (importing loads torch). */
function hasAlpineLsp(command: string, args: string[]): Promise<boolean> {
  const probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('alpine_lsp') else 1)";
  return new Promise((resolve) => {
    execFile(command, [...args, '-c', probe], { timeout: 20000 }, (error) => resolve(!error));
  });
}

/** Restart when the Python extension's active interpreter changes, unless alpine.server.command is set. */
async function watchPythonInterpreter(context: vscode.ExtensionContext): Promise<void> {
  const api = await pythonExtensionApi();
  const event = api?.environments?.onDidChangeActiveEnvironmentPath;
  if (typeof event !== 'function') {
    return;
  }
  try {
    context.subscriptions.push(
      event(() => {
        if (!usesConfiguredCommand) {
          output.appendLine('The Python interpreter changed; restarting the server.');
          void enqueue(restart);
        }
      }),
    );
  } catch (error) {
    output.appendLine(`Could not watch the Python interpreter: ${describeError(error)}`);
  }
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
