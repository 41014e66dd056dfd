// Builds the dashboard into dist/: one bundled, minified script and stylesheet with content
// hashes in their names (served as immutable), index.html pointing at them, and a .gz twin of
// each file that the server sends to clients accepting gzip. Fails when the whole transfer
// exceeds the 200 KB gzipped budget.
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const dist = 'dist';
const budgetBytes = 200 * 1024;

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'assets'), { recursive: true });

const result = await build({
  entryPoints: { app: 'src/main.ts' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  outdir: join(dist, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((file) => relative(dist, file));
const script = outputs.find((file) => file.endsWith('.js'));
const style = outputs.find((file) => file.endsWith('.css'));
if (!script || !style) throw new Error(`expected a .js and a .css output, got ${outputs}`);

const template = readFileSync('index.html', 'utf8');
writeFileSync(
  join(dist, 'index.html'),
  template.replace('%STYLE%', `/${style}`).replace('%SCRIPT%', `/${script}`),
);

let gzipped = 0;
const walk = (directory) => {
  for (const name of readdirSync(directory)) {
    const path = join(directory, name);
    if (statSync(path).isDirectory()) {
      walk(path);
      continue;
    }
    const compressed = gzipSync(readFileSync(path), { level: 9 });
    writeFileSync(`${path}.gz`, compressed);
    gzipped += compressed.length;
    console.log(`  ${relative(dist, path).padEnd(36)} ${(statSync(path).size / 1024).toFixed(1).padStart(7)} KB  ${(compressed.length / 1024).toFixed(1).padStart(6)} KB gzipped`);
  }
};
walk(dist);
console.log(`  total ${(gzipped / 1024).toFixed(1)} KB gzipped (budget ${budgetBytes / 1024} KB)`);
if (gzipped > budgetBytes) {
  console.error('dashboard: over the 200 KB gzipped budget');
  process.exit(1);
}
