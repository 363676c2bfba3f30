// pol for VS Code: starts `pol lsp` (setting `pol.server.path`) as the language server
// of `.pol` files. Highlighting comes from the TextMate grammar until the server's
// semantic tokens arrive. Needs `npm install` (vscode-languageclient) to package.
'use strict';
const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration('pol').get('server.path') || 'pol';
  const server = { command, args: ['lsp'], transport: TransportKind.stdio };
  client = new LanguageClient(
    'pol',
    'pol language server',
    { run: server, debug: server },
    { documentSelector: [{ scheme: 'file', language: 'pol' }] },
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
