import { TenantryError } from '../errors/catalog.ts';
import { checkJobType, intOption, type JobDefinition, type JobType } from './job-types.ts';

/**
 * The job types this process knows, by name. A worker claims only jobs of types defined
 * here; an enqueue validates the payload against its type's schema when the type is
 * defined here (a producer may enqueue types that only another service's workers run).
 *
 * @example
 * ```ts
 * const registry = new JobRegistry();
 * registry.define({ type: 'email.send', schema: z.object({ to: z.email() }), run: async (p) => send(p.to) });
 * ```
 */
export class JobRegistry {
  readonly #types = new Map<string, JobDefinition<unknown, unknown>>();

  /** Adds a job type; `USAGE_ERROR` when the name is taken or an option is out of range. */
  define<P, DB = unknown>(definition: JobDefinition<P, DB>): JobType<P> {
    checkJobType(definition.type);
    if (typeof definition.run !== 'function') throw new TenantryError('USAGE_ERROR', 'a job type needs a run function');
    if (this.#types.has(definition.type)) {
      throw new TenantryError('USAGE_ERROR', `job type ${definition.type} is already defined`);
    }
    intOption(definition.maxAttempts, 5, 'maxAttempts', 1, 1000);
    intOption(definition.timeoutMs, 300_000, 'timeoutMs', 1, 86_400_000);
    intOption(definition.priority, 0, 'priority', -1000, 1000);
    intOption(definition.backoffMs, 1000, 'backoffMs', 1, 86_400_000);
    intOption(definition.maxBackoffMs, 3_600_000, 'maxBackoffMs', 1, 7 * 86_400_000);
    this.#types.set(definition.type, Object.freeze({ ...definition }) as JobDefinition<unknown, unknown>);
    return Object.freeze({ type: definition.type });
  }

  /** The definition of `type`, if this process defined it. */
  get(type: string): JobDefinition<unknown, unknown> | undefined {
    return this.#types.get(type);
  }

  /** Every defined type name. */
  types(): string[] {
    return [...this.#types.keys()];
  }

  /**
   * The payload as its type's schema returns it (or as given, for a type defined
   * elsewhere); `JOB_PAYLOAD_INVALID` when the schema refuses it or it is not a JSON object.
   */
  validate(type: string, payload: unknown): Record<string, unknown> {
    const schema = this.#types.get(type)?.schema;
    let value: unknown = payload;
    if (schema) {
      try {
        value = schema.parse(payload);
      } catch (error) {
        throw new TenantryError('JOB_PAYLOAD_INVALID', `job type ${type}`, { cause: error });
      }
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new TenantryError('JOB_PAYLOAD_INVALID', 'a job payload is a JSON object');
    }
    return value as Record<string, unknown>;
  }
}
