/**
 * `tenantry/nestjs`: a NestJS 11 module (Express platform) that walks steps 1–4 of the
 * request path with the same core as the Fastify plugin — a guard (authenticate, identify,
 * admit), an interceptor (the handler runs in the tenant's context), `@CurrentTenant()` /
 * `@CurrentPrincipal()` and an exception filter answering with problem details.
 *
 * Written without decorator syntax (the decorators are applied as functions, dependencies
 * named with `Inject`), so it runs from source under Node's type stripping and needs no
 * `emitDecoratorMetadata` in your build.
 *
 * @packageDocumentation
 */

import 'reflect-metadata';
import {
  type ArgumentsHost,
  applyDecorators,
  type CallHandler,
  type CanActivate,
  Catch,
  createParamDecorator,
  type DynamicModule,
  type ExceptionFilter,
  type ExecutionContext,
  Inject,
  Injectable,
  Module,
  type NestInterceptor,
  SetMetadata,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { APP_FILTER, Reflector } from '@nestjs/core';
import type { Observable } from 'rxjs';
import type { Principal } from '../auth/permissions.ts';
import { type TenantContext, withTenant } from '../context/tenant-context.ts';
import type { TenantRecord } from '../control/tenant-record.ts';
import { PROBLEM_JSON, toProblem } from '../http/problem.ts';
import { requestIdOf } from '../http/request-id.ts';
import {
  admitTenantRequest,
  type TenantRequest,
  type TenantRequestOptions,
  type TenantRouteRules,
} from '../http/tenant-request.ts';
import type { CredentialHeaders } from '../identify/credential.ts';

export { accessTokenAuthenticator, apiKeyAuthenticator } from '../auth/authenticators.ts';
export { ChangeFeed } from '../control/change-feed.ts';
export type { TenantRequestOptions, TenantRouteRules } from '../http/tenant-request.ts';
export { TenantCache } from '../identify/tenant-cache.ts';

/** The request as the guard sees it on the Express platform (an Express `Request` fits). */
export interface NestTenantRequest {
  readonly headers: CredentialHeaders;
  readonly hostname?: string | undefined;
  readonly originalUrl?: string | undefined;
  readonly url: string;
  tenant?: TenantRecord | undefined;
  principal?: Principal | undefined;
}

/** Options of {@link TenantryModule.forRoot}: steps 1–3 as every adapter takes them. */
export interface TenantryNestOptions extends Omit<TenantRequestOptions<NestTenantRequest>, 'onIdentified'> {
  /** Register {@link TenantryExceptionFilter} for the whole application (default true). */
  problemDetails?: boolean;
}

/** Injection token of the module's options. */
export const TENANTRY_OPTIONS = Symbol.for('tenantry.nestjs.options');
/** Metadata key of a route's {@link TenantRouteRules}. */
export const TENANT_ROUTE = 'tenantry:tenant-route';
/** Where the guard leaves the admitted request's context for the interceptor. */
const CONTEXT = Symbol('tenantry.context');
type ContextHolder = NestTenantRequest & { [CONTEXT]?: TenantContext };

/**
 * Guard of tenant routes: authenticates, identifies (with any claim checked against the
 * credential), checks the route's permission and admits the tenant; sets `req.tenant` and
 * `req.principal`. A refusal throws the coded `TenantryError`. Usually applied through
 * {@link TenantRoute}.
 */
export class TenantGuard implements CanActivate {
  readonly #options: TenantryNestOptions;
  readonly #reflector: Reflector;

  constructor(options: TenantryNestOptions, reflector: Reflector) {
    this.#options = options;
    this.#reflector = reflector;
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const http = context.switchToHttp();
    const req = http.getRequest<ContextHolder>();
    const res = http.getResponse<{ setHeader(name: string, value: string): void }>();
    const rules =
      this.#reflector.getAllAndOverride<TenantRouteRules | undefined>(TENANT_ROUTE, [
        context.getHandler(),
        context.getClass(),
      ]) ?? {};
    const view: TenantRequest = {
      headers: req.headers,
      hostname: req.hostname,
      url: req.originalUrl ?? req.url,
      tenant: undefined,
      principal: undefined,
    };
    const requestId = requestIdOf(req.headers);
    res.setHeader('x-request-id', requestId);
    req[CONTEXT] = await admitTenantRequest(this.#options, rules, view, req, requestId, (headers) => {
      for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    });
    req.tenant = view.tenant;
    req.principal = view.principal;
    return true;
  }
}
Injectable()(TenantGuard);
Inject(TENANTRY_OPTIONS)(TenantGuard, undefined, 0);
Inject(Reflector)(TenantGuard, undefined, 1);

/**
 * Interceptor that runs the handler — and everything it awaits — in the tenant context the
 * {@link TenantGuard} admitted, so `getTenant()` and `tenantry.transaction(fn)` work in it.
 * NestJS binds the handler's async context when `next.handle()` is called, so calling it
 * inside `withTenant` is enough.
 */
export class TenantContextInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const tenant = context.switchToHttp().getRequest<ContextHolder>()[CONTEXT];
    return tenant ? withTenant(tenant, () => next.handle()) : next.handle();
  }
}
Injectable()(TenantContextInterceptor);

/**
 * Marks a controller or handler as a tenant route: the {@link TenantGuard} and
 * {@link TenantContextInterceptor}, with the permission and feature it requires.
 *
 * @example
 * ```ts
 * @Controller('v1/notes')
 * @TenantRoute({ permission: 'items:read' })
 * class NotesController {
 *   @Get() list(@CurrentTenant() tenant: TenantRecord) { return tenantry.transaction((tx) => tx.query('SELECT * FROM notes')); }
 * }
 * ```
 */
export function TenantRoute(rules: TenantRouteRules = {}): ClassDecorator & MethodDecorator {
  return applyDecorators(
    SetMetadata(TENANT_ROUTE, rules),
    UseGuards(TenantGuard),
    UseInterceptors(TenantContextInterceptor),
  ) as ClassDecorator & MethodDecorator;
}

/**
 * Parameter decorator: the admitted tenant (`TenantRecord`) of a tenant route.
 *
 * @example
 * ```ts
 * @Get('me') me(@CurrentTenant() tenant: TenantRecord) { return { slug: tenant.slug }; }
 * ```
 */
export const CurrentTenant: () => ParameterDecorator = createParamDecorator(
  (_data: unknown, context: ExecutionContext) => context.switchToHttp().getRequest<NestTenantRequest>().tenant,
);

/**
 * Parameter decorator: who is calling (`Principal`) on a tenant route.
 *
 * @example
 * ```ts
 * @Get('whoami') whoami(@CurrentPrincipal() principal: Principal) { return { kind: principal.kind }; }
 * ```
 */
export const CurrentPrincipal: () => ParameterDecorator = createParamDecorator(
  (_data: unknown, context: ExecutionContext) => context.switchToHttp().getRequest<NestTenantRequest>().principal,
);

/**
 * Exception filter answering every error as RFC 9457 problem details through the same
 * `toProblem` as the reference server: a `TenantryError` keeps its code and status, NestJS's
 * `HttpException` its 4xx status (an unknown route is `NOT_FOUND`), a database outage is
 * `DATABASE_UNAVAILABLE`, anything else a bare 500 — no stack trace or driver message leaves.
 */
export class TenantryExceptionFilter implements ExceptionFilter {
  catch(error: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const req = http.getRequest<NestTenantRequest>();
    const res = http.getResponse<{
      headersSent?: boolean;
      getHeader(name: string): unknown;
      setHeader(name: string, value: string): void;
      status(code: number): { end(body: string): void };
    }>();
    if (res.headersSent) return;
    // NestJS's HttpException carries getStatus(); the shared converter reads a framework's `statusCode`.
    const getStatus = (error as { getStatus?: unknown })?.getStatus;
    const converted =
      typeof getStatus === 'function'
        ? { statusCode: getStatus.call(error) as number, message: (error as Error).message }
        : error;
    const problem = toProblem(converted, requestIdOf(req.headers, res.getHeader('x-request-id')));
    if ((problem.status === 429 || problem.status === 503) && !res.getHeader('retry-after')) {
      res.setHeader('retry-after', '1');
    }
    res.setHeader('x-request-id', problem.requestId ?? '');
    res.setHeader('content-type', PROBLEM_JSON);
    res.status(problem.status).end(JSON.stringify(problem));
  }
}
Catch()(TenantryExceptionFilter);

/**
 * The Tenantry NestJS module: `TenantryModule.forRoot(options)` provides the
 * {@link TenantGuard}, the {@link TenantContextInterceptor} and (unless `problemDetails:
 * false`) the {@link TenantryExceptionFilter} for the whole application.
 *
 * @example
 * ```ts
 * @Module({
 *   imports: [TenantryModule.forRoot({ tenants: new TenantCache(tenantry.tenants), authenticators: [apiKeyAuthenticator(tenantry.apiKeys)] })],
 *   controllers: [NotesController],
 * })
 * class AppModule {}
 * ```
 */
// biome-ignore lint/complexity/noStaticOnlyClass: NestJS modules are classes; forRoot is the convention
export class TenantryModule {
  static forRoot(options: TenantryNestOptions): DynamicModule {
    return {
      module: TenantryModule,
      global: true,
      providers: [
        { provide: TENANTRY_OPTIONS, useValue: options },
        TenantGuard,
        TenantContextInterceptor,
        ...(options.problemDetails === false ? [] : [{ provide: APP_FILTER, useClass: TenantryExceptionFilter }]),
      ],
      exports: [TENANTRY_OPTIONS, TenantGuard, TenantContextInterceptor],
    };
  }
}
Module({})(TenantryModule);
