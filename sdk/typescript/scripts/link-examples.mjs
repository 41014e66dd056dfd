// The examples (../../examples/typescript) import the SDK's dev dependencies (openai, @x402/...):
// for tsc to resolve them with their package exports, their folder gets a node_modules link to
// this package's node_modules (git-ignored). @stub-ledger/sdk itself maps to dist/ in
// tsconfig.test.json, and at run time the compiled examples (under build/) resolve it by the
// package's self-reference.
import { existsSync, lstatSync, symlinkSync, unlinkSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const packageDir = join(here, "..");
const examples = join(packageDir, "..", "..", "examples", "typescript");
const link = join(examples, "node_modules");
if (existsSync(examples)) {
  try {
    if (lstatSync(link).isSymbolicLink()) unlinkSync(link);
  } catch {
    // no link yet
  }
  if (!existsSync(link)) symlinkSync(relative(examples, join(packageDir, "node_modules")), link, "dir");
}
