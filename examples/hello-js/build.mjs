// Builds app.js into a WebAssembly component for the FerrisFX `function` world.
//
//   node build.mjs [WIT_DIR] [OUTPUT]     (defaults: wit, function.wasm; `npm run build`)
//
// Uses componentize-js (SpiderMonkey); only the WASI interfaces the platform grants are
// imported: no HTTP, no fetch event.
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const [witPath = join(here, 'wit'), output = join(here, 'function.wasm')] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: join(here, 'app.js'),
  witPath,
  worldName: 'function',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(output, component);
console.log(`built ${output} (${component.length} bytes)`);
