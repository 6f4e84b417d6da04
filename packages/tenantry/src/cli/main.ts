#!/usr/bin/env node
import { createProgram } from './program.ts';
import { reportError } from './run.ts';

createProgram()
  .parseAsync(process.argv)
  .catch((error: unknown) => {
    process.exitCode = reportError(error);
  });
