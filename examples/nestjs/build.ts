// Compiles src/ to dist/ with TypeScript's legacy decorators, file by file. Node's type
// stripping runs the other examples as they are, but it has no decorators, and NestJS's
// parameter decorators exist only in TypeScript's legacy form. Dependencies are named with
// @Inject(token), so no emitDecoratorMetadata (which needs whole-program types) is required.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import ts from 'typescript';

const src = new URL('./src/', import.meta.url);
const dist = new URL('./dist/', import.meta.url);
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
for (const name of readdirSync(src).filter((file) => file.endsWith('.ts'))) {
  const { outputText } = ts.transpileModule(readFileSync(new URL(name, src), 'utf8'), {
    fileName: name,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      experimentalDecorators: true,
      rewriteRelativeImportExtensions: true,
      verbatimModuleSyntax: true,
    },
  });
  writeFileSync(new URL(name.replace(/\.ts$/, '.js'), dist), outputText);
}
