// Copies the repository's shared price file (prices/llm.json, two levels up) into dist/, so the
// installed package finds its prices at run time without the repository around it.
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, "..", "..", "..", "prices", "llm.json");
const target = join(here, "..", "dist", "llm.json");
if (!existsSync(source)) {
  console.error(`copy-prices: ${source} not found`);
  process.exit(1);
}
mkdirSync(dirname(target), { recursive: true });
copyFileSync(source, target);
