// mlops-ide: what VS Code knows about the user's activity, for the platform's idle culling.
// An open VS Code tab keeps its websocket busy whether anyone works or not, so the traffic
// says nothing; VS Code itself knows: keys and clicks (window.state.active goes false after
// about a minute without them), edits, a terminal command running, a debug session. While
// any of these holds, this touches ACTIVITY_FILE; the single-user server reads its mtime
// (startup/server_activity.py) and reports it to the hub, whose idle culler does the rest.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const vscode = require("vscode");

const EVERY_MS = 15000;
const dataHome = process.env.XDG_DATA_HOME || path.join(os.homedir(), ".local", "share");
const ACTIVITY_FILE = path.join(dataHome, "code-server", "mlops-ide-activity");

function activate(context) {
  let running = 0; // terminal commands started and not ended (shell integration)
  let last = 0;
  const touch = () => {
    const now = Date.now();
    if (now - last < 5000) return; // typing fires many edits: one write every few seconds
    last = now;
    try {
      fs.mkdirSync(path.dirname(ACTIVITY_FILE), { recursive: true });
      fs.writeFileSync(ACTIVITY_FILE, new Date(now).toISOString() + "\n");
    } catch (error) {
      console.error("mlops-ide activity: " + error);
    }
  };
  const busy = () =>
    vscode.window.state.active || running > 0 || vscode.debug.activeDebugSession !== undefined;

  touch(); // opening VS Code is activity
  const timer = setInterval(() => busy() && touch(), EVERY_MS);
  context.subscriptions.push({ dispose: () => clearInterval(timer) });
  context.subscriptions.push(vscode.window.onDidChangeWindowState((state) => state.active && touch()));
  context.subscriptions.push(vscode.workspace.onDidChangeTextDocument(touch));
  context.subscriptions.push(vscode.workspace.onDidSaveTextDocument(touch));
  context.subscriptions.push(vscode.debug.onDidStartDebugSession(touch));
  if (vscode.window.onDidStartTerminalShellExecution) {
    context.subscriptions.push(
      vscode.window.onDidStartTerminalShellExecution(() => {
        running += 1;
        touch();
      }),
      vscode.window.onDidEndTerminalShellExecution(() => {
        running = Math.max(0, running - 1);
        touch();
      }),
    );
  }
}

function deactivate() {}

module.exports = { activate, deactivate };
