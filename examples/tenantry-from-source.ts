// Inside this repository `tenantry` is a workspace whose exports point at `dist/`, which only
// `npm pack` builds. The examples start with `node --import ../tenantry-from-source.ts`, so
// `tenantry` and `tenantry/<subpath>` load from `packages/tenantry/src` through Node's type
// stripping, the way the library's own tests run it. An application that installs `tenantry`
// from the registry needs none of this.
import { readFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const PACKAGE = new URL('../packages/tenantry/', import.meta.url);
const exportsMap = JSON.parse(readFileSync(new URL('package.json', PACKAGE), 'utf8')).exports as Record<
  string,
  { default?: string } | string
>;

registerHooks({
  resolve(specifier, context, next) {
    if (specifier === 'tenantry' || specifier.startsWith('tenantry/')) {
      const entry = exportsMap[specifier === 'tenantry' ? '.' : `./${specifier.slice('tenantry/'.length)}`];
      const target = typeof entry === 'object' ? entry.default : undefined;
      if (target?.startsWith('./dist/')) {
        const source = `src/${target.slice('./dist/'.length).replace(/\.js$/, '.ts')}`;
        return { url: new URL(source, PACKAGE).href, format: 'module-typescript', shortCircuit: true };
      }
    }
    return next(specifier, context);
  },
});
