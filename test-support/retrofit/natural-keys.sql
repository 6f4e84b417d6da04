-- A small ERP keyed the old way: composite natural keys (year + order number, warehouse +
-- SKU), text codes, and self-references (an employee's manager, a category tree).

CREATE TABLE unit (code text PRIMARY KEY, name text NOT NULL);

CREATE TABLE category (
  code text PRIMARY KEY,
  parent_code text REFERENCES category (code),
  name text NOT NULL
);

CREATE TABLE product (
  sku text PRIMARY KEY,
  name text NOT NULL,
  unit_code text NOT NULL REFERENCES unit (code),
  category_code text REFERENCES category (code)
);

CREATE TABLE warehouse (code text PRIMARY KEY, city text NOT NULL);

CREATE TABLE stock (
  warehouse_code text NOT NULL REFERENCES warehouse (code),
  sku text NOT NULL REFERENCES product (sku),
  qty int NOT NULL DEFAULT 0,
  PRIMARY KEY (warehouse_code, sku)
);

CREATE TABLE employee (
  emp_no int PRIMARY KEY,
  name text NOT NULL,
  manager_no int REFERENCES employee (emp_no) ON DELETE SET NULL
);

CREATE TABLE orders (
  year int NOT NULL,
  order_no int NOT NULL,
  customer text NOT NULL,
  taken_by int REFERENCES employee (emp_no),
  PRIMARY KEY (year, order_no)
);

CREATE TABLE order_line (
  year int NOT NULL,
  order_no int NOT NULL,
  line_no int NOT NULL,
  sku text NOT NULL REFERENCES product (sku),
  qty int NOT NULL,
  PRIMARY KEY (year, order_no, line_no),
  FOREIGN KEY (year, order_no) REFERENCES orders (year, order_no) ON DELETE CASCADE
);

CREATE TABLE shipment (
  year int NOT NULL,
  order_no int NOT NULL,
  shipment_no int NOT NULL,
  warehouse_code text NOT NULL REFERENCES warehouse (code),
  shipped_on date,
  PRIMARY KEY (year, order_no, shipment_no),
  FOREIGN KEY (year, order_no) REFERENCES orders (year, order_no)
);

INSERT INTO unit VALUES ('pc', 'piece'), ('kg', 'kilogram'), ('m', 'metre');
INSERT INTO category VALUES ('root', NULL, 'All');
INSERT INTO category SELECT 'c' || g, 'root', 'Category ' || g FROM generate_series(1, 10) g;
INSERT INTO category SELECT 'c' || g || '-' || h, 'c' || g, 'Sub ' || h FROM generate_series(1, 10) g, generate_series(1, 5) h;
INSERT INTO product SELECT 'SKU-' || g, 'Product ' || g, (ARRAY['pc', 'kg', 'm'])[1 + g % 3], 'c' || (1 + g % 10) || '-' || (1 + g % 5)
  FROM generate_series(1, 500) g;
INSERT INTO warehouse VALUES ('NORTH', 'Hamburg'), ('SOUTH', 'Munich');
INSERT INTO stock SELECT w, 'SKU-' || g, g % 50 FROM generate_series(1, 500) g, unnest(ARRAY['NORTH', 'SOUTH']) w;
INSERT INTO employee VALUES (1, 'Boss', NULL);
INSERT INTO employee SELECT g, 'Employee ' || g, 1 + (g - 2) / 5 FROM generate_series(2, 60) g;
INSERT INTO orders SELECT 2023 + g % 2, g, 'Customer ' || g % 97, 1 + g % 60 FROM generate_series(1, 2000) g;
INSERT INTO order_line SELECT o.year, o.order_no, l, 'SKU-' || (1 + (o.order_no * l) % 500), l FROM orders o, generate_series(1, 3) l;
INSERT INTO shipment SELECT year, order_no, 1, (ARRAY['NORTH', 'SOUTH'])[1 + order_no % 2], DATE '2024-01-01' FROM orders WHERE order_no % 2 = 0;
