import {
  AliasNode,
  AndNode,
  BinaryOperationNode,
  ColumnNode,
  DeleteQueryNode,
  IdentifierNode,
  InsertQueryNode,
  JoinNode,
  type KyselyPlugin,
  type OperationNode,
  OperationNodeTransformer,
  OperatorNode,
  ParensNode,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  PrimitiveValueListNode,
  type QueryId,
  type QueryResult,
  ReferenceNode,
  type RootOperationNode,
  SelectQueryNode,
  TableNode,
  type UnknownRow,
  UpdateQueryNode,
  ValueListNode,
  ValueNode,
  ValuesNode,
  WhereNode,
} from 'kysely';

/** Which tables are tenant tables, and the current tenant's id. */
export interface TenantFilterOptions {
  /** Is `table` (optionally in `schema`) a tenant table? */
  isTenantTable(table: string, schema: string | undefined): boolean;
  /** The id to filter by; called once per compiled query. */
  tenantId(): string;
  /** Column name; default `tenant_id`. */
  column?: string;
}

interface TableRef {
  /** What the predicate qualifies the column with: the alias, else the table name. */
  readonly reference: TableNode;
}

function tenantTableRef(node: OperationNode, opts: TenantFilterOptions): TableRef | undefined {
  if (TableNode.is(node)) {
    const name = node.table.identifier.name;
    const schema = node.table.schema?.name;
    return opts.isTenantTable(name, schema) ? { reference: node } : undefined;
  }
  if (AliasNode.is(node) && TableNode.is(node.node) && IdentifierNode.is(node.alias)) {
    const name = node.node.table.identifier.name;
    const schema = node.node.table.schema?.name;
    return opts.isTenantTable(name, schema) ? { reference: TableNode.create(node.alias.name) } : undefined;
  }
  return undefined;
}

class TenantFilterTransformer extends OperationNodeTransformer {
  readonly #opts: TenantFilterOptions;
  readonly #column: string;
  readonly #tenantId: string;

  constructor(opts: TenantFilterOptions) {
    super();
    this.#opts = opts;
    this.#column = opts.column ?? 'tenant_id';
    this.#tenantId = opts.tenantId();
  }

  #predicate(ref: TableRef): OperationNode {
    return BinaryOperationNode.create(
      ReferenceNode.create(ColumnNode.create(this.#column), ref.reference),
      OperatorNode.create('='),
      ValueNode.create(this.#tenantId),
    );
  }

  #withPredicates<T extends { where?: WhereNode }>(node: T, tables: readonly OperationNode[]): T {
    const predicates = tables
      .map((t) => tenantTableRef(t, this.#opts))
      .filter((r): r is TableRef => r !== undefined)
      .map((r) => this.#predicate(r));
    if (predicates.length === 0) return node;
    // Tenant predicates first, the caller's own condition in parentheses after them.
    let filter = predicates.reduce((acc, p) => AndNode.create(acc, p));
    if (node.where) filter = AndNode.create(filter, ParensNode.create(node.where.where));
    return Object.freeze({ ...node, where: WhereNode.create(filter) });
  }

  #joins<T extends { joins?: readonly JoinNode[] }>(node: T): T {
    if (!node.joins) return node;
    const joins = node.joins.map((join) => {
      const ref = tenantTableRef(join.table, this.#opts);
      if (!ref || !join.on) return join;
      return JoinNode.cloneWithOn(join, this.#predicate(ref));
    });
    return Object.freeze({ ...node, joins: Object.freeze(joins) });
  }

  protected override transformSelectQuery(node: SelectQueryNode, queryId?: QueryId): SelectQueryNode {
    const inner = this.#joins(super.transformSelectQuery(node, queryId));
    const crossJoined = (inner.joins ?? []).filter((j) => !j.on).map((j) => j.table);
    return this.#withPredicates(inner, [...(inner.from?.froms ?? []), ...crossJoined]);
  }

  protected override transformUpdateQuery(node: UpdateQueryNode, queryId?: QueryId): UpdateQueryNode {
    const inner = this.#joins(super.transformUpdateQuery(node, queryId));
    const tables = [...(inner.table ? [inner.table] : []), ...(inner.from?.froms ?? [])];
    return this.#withPredicates(inner, tables);
  }

  protected override transformDeleteQuery(node: DeleteQueryNode, queryId?: QueryId): DeleteQueryNode {
    const inner = this.#joins(super.transformDeleteQuery(node, queryId));
    return this.#withPredicates(inner, [...inner.from.froms, ...(inner.using?.tables ?? [])]);
  }

  protected override transformInsertQuery(node: InsertQueryNode, queryId?: QueryId): InsertQueryNode {
    const inner = super.transformInsertQuery(node, queryId);
    if (!inner.into || !tenantTableRef(inner.into, this.#opts)) return inner;
    if (!inner.columns || !inner.values || !ValuesNode.is(inner.values)) return inner;
    if (inner.columns.some((c) => c.column.name === this.#column)) return inner;
    const rows = inner.values.values.map((row) =>
      PrimitiveValueListNode.is(row)
        ? PrimitiveValueListNode.create([...row.values, this.#tenantId])
        : ValueListNode.create([...row.values, ValueNode.create(this.#tenantId)]),
    );
    return Object.freeze({
      ...inner,
      columns: Object.freeze([...inner.columns, ColumnNode.create(this.#column)]),
      values: ValuesNode.create(rows),
    });
  }
}

/**
 * Adds `tenant_id = <current tenant>` to every select, update and delete on a tenant
 * table (and to the `ON` of joins of tenant tables), and the tenant id to inserts, so
 * application code never writes it. This is the fast path (index use, full-text search,
 * Citus routing); row-level security stays the guarantee, and also covers raw SQL.
 *
 * @example
 * ```ts
 * const db = new Kysely<DB>({ dialect, plugins: [new TenantFilterPlugin({
 *   isTenantTable: (t) => t === 'items', tenantId: () => getTenant().id })] });
 * ```
 */
export class TenantFilterPlugin implements KyselyPlugin {
  readonly #opts: TenantFilterOptions;

  constructor(opts: TenantFilterOptions) {
    this.#opts = opts;
  }

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    const { node } = args;
    if (
      !SelectQueryNode.is(node) &&
      !UpdateQueryNode.is(node) &&
      !DeleteQueryNode.is(node) &&
      !InsertQueryNode.is(node)
    ) {
      return node;
    }
    return new TenantFilterTransformer(this.#opts).transformNode(node);
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}
