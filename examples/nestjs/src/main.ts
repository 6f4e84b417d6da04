import 'reflect-metadata';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TenantryModule } from 'tenantry/nestjs';
import { ITEMS, ItemsController } from './items.controller.ts';
import { itemStore } from './items.ts';
import { connectTenantry } from './tenantry.ts';

const { tenantry, identification, close } = await connectTenantry();

@Controller('health')
class HealthController {
  @Get()
  health() {
    return { status: 'ok' };
  }
}

// The guard, the interceptor and problem+json errors for the whole application.
@Module({
  imports: [TenantryModule.forRoot(identification)],
  controllers: [HealthController, ItemsController],
  providers: [{ provide: ITEMS, useValue: itemStore(tenantry) }],
})
class AppModule {}

const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
await app.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1');
const address = app.getHttpServer().address();
console.log(`listening on http://127.0.0.1:${address.port}`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(
    signal,
    () =>
      void app
        .close()
        .then(close)
        .then(() => process.exit(0)),
  );
}
