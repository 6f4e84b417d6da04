// pg's internal modules used by wire/ and transaction/ (CommonJS, shipped without types).
declare module 'pg/lib/result.js' {
  const Result: new (rowMode: string | undefined, types: unknown) => unknown;
  export default Result;
}
declare module 'pg/lib/utils.js' {
  const utils: { prepareValue(value: unknown): unknown };
  export default utils;
}
