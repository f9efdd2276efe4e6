// Builds the web console into dist/ui: one bundled script (Preact, htm, uPlot and the pages),
// one stylesheet and the page. No CDN: everything the console needs is in these files.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2] ?? join(root, 'dist', 'ui');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const started = Date.now();
await build({
  entryPoints: [join(root, 'ui', 'src', 'main.ts')],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: 'linked',
  legalComments: 'eof',
  outfile: join(out, 'app.js'),
  logLevel: 'warning',
});
const css = [readFileSync(join(root, 'node_modules', 'uplot', 'dist', 'uPlot.min.css'), 'utf8'), readFileSync(join(root, 'ui', 'styles.css'), 'utf8')].join('\n');
writeFileSync(join(out, 'app.css'), css);
copyFileSync(join(root, 'ui', 'index.html'), join(out, 'index.html'));
console.log(`console built into ${out} in ${Date.now() - started} ms`);
