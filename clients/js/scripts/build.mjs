// Build dist/ (ESM bundle + .d.ts) and print the size a browser downloads (min + gzip).
import { execFileSync } from "node:child_process";
import { rmSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

rmSync("dist", { recursive: true, force: true });
const common = { entryPoints: ["src/index.ts"], bundle: true, format: "esm", platform: "neutral", target: "es2022" };
await build({ ...common, outfile: "dist/index.js", sourcemap: true });
const minified = await build({ ...common, minify: true, write: false, outfile: "dist/index.min.js", metafile: false });
execFileSync("npx", ["tsc", "-p", "tsconfig.json"], { stdio: "inherit" });
const code = minified.outputFiles[0].contents;
const gzip = gzipSync(code, { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} kB`;
console.log(`@litebase/client: ${kb(readFileSync("dist/index.js").length)} bundled, ${kb(code.length)} min, ${kb(gzip)} min+gzip (goal <= 15 kB)`);
if (gzip > 15 * 1024) {
  console.error("over the 15 kB min+gzip budget");
  process.exit(1);
}
