// Compiles Contracts.sol with solc-js and writes each contract's creation
// bytecode as hex (Token.bin, Vault.bin), which the chain tests deploy on
// anvil. Run it only when the source changes:
//   npm install --prefix /tmp/solc solc@0.8.28 && NODE_PATH=/tmp/solc/node_modules node compile.mjs
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const solc = require('solc');
const dir = path.dirname(new URL(import.meta.url).pathname);
const input = {
  language: 'Solidity',
  sources: { 'Contracts.sol': { content: fs.readFileSync(path.join(dir, 'Contracts.sol'), 'utf8') } },
  settings: { optimizer: { enabled: true, runs: 200 }, outputSelection: { '*': { '*': ['evm.bytecode.object'] } } },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
for (const error of output.errors ?? []) {
  if (error.severity === 'error') { console.error(error.formattedMessage); process.exit(1); }
}
for (const [name, contract] of Object.entries(output.contracts['Contracts.sol'])) {
  fs.writeFileSync(path.join(dir, `${name}.bin`), contract.evm.bytecode.object + '\n');
  console.log(`${name}.bin: ${contract.evm.bytecode.object.length / 2} bytes (solc ${solc.version()})`);
}
