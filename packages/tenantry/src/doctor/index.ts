/**
 * `tenantry/doctor`: inspects a database for isolation gaps (tables, policies, keys,
 * indexes, roles) and prints the SQL that fixes each; `tenantry.doctor()` runs it on the
 * instance's own database.
 *
 * @packageDocumentation
 */
export { type DoctorOptions, runDoctor } from './doctor.ts';
export { type DoctorReport, FINDINGS, type Finding, type FindingCode, type Severity } from './finding.ts';
