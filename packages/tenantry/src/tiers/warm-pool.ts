import type { Logger } from '../config.ts';
import type { Provisioner } from './provisioner.ts';

/** Options of {@link WarmPoolRefiller}. */
export interface WarmPoolOptions {
  /** Warm schemas to keep waiting. */
  readonly size: number;
  /** Schema-tier placement to fill (default `schemas`). */
  readonly placement?: string;
  /** How often to check (default 5 s). */
  readonly intervalMs?: number;
  readonly logger?: Logger | undefined;
}

/**
 * Keeps `size` warm schemas waiting in the background, so creating a schema-tier tenant
 * is a claim, not a `CREATE SCHEMA` plus every migration; each round also drops what a
 * crashed provisioning left behind. One round at a time; errors are logged and retried on
 * the next round.
 *
 * @example
 * ```ts
 * const refiller = new WarmPoolRefiller(tenantry.provisioner, { size: 20 });
 * refiller.start();
 * // …
 * await refiller.stop();
 * ```
 */
export class WarmPoolRefiller {
  readonly #provisioner: Provisioner;
  readonly #options: WarmPoolOptions;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;

  constructor(provisioner: Provisioner, options: WarmPoolOptions) {
    this.#provisioner = provisioner;
    this.#options = options;
  }

  /** Starts refilling now and then every `intervalMs`. */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.refill(), this.#options.intervalMs ?? 5000);
    this.#timer.unref();
    this.refill();
  }

  /** Runs one round unless one is running; resolves when it ends. */
  refill(): Promise<void> {
    this.#round ??= (async () => {
      try {
        await this.#provisioner.cleanupStale();
        const created = await this.#provisioner.fillWarmSchemas(
          this.#options.placement ?? 'schemas',
          this.#options.size,
        );
        if (created > 0) this.#options.logger?.info({ created }, 'warm schemas created');
      } catch (error) {
        this.#options.logger?.warn({ err: (error as Error).message }, 'warm schema refill failed');
      } finally {
        this.#round = undefined;
      }
    })();
    return this.#round;
  }

  /** Stops the timer and waits for a running round. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#round;
  }
}
