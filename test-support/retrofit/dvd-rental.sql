-- A DVD-rental shop in the shape of the well-known sample database: serial keys, foreign
-- key chains, a partitioned payment table, views, triggers, and reference tables
-- (country, language). Single-tenant: nothing here knows about tenants.

CREATE FUNCTION last_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.last_update = now();
  RETURN NEW;
END $$;

CREATE TABLE language (
  language_id serial PRIMARY KEY,
  name text NOT NULL,
  last_update timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE country (
  country_id serial PRIMARY KEY,
  country text NOT NULL,
  last_update timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE city (
  city_id serial PRIMARY KEY,
  city text NOT NULL,
  country_id int NOT NULL REFERENCES country (country_id),
  last_update timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_fk_country_id ON city (country_id);

CREATE TABLE address (
  address_id serial PRIMARY KEY,
  address text NOT NULL,
  district text NOT NULL,
  city_id int NOT NULL REFERENCES city (city_id),
  postal_code text,
  phone text NOT NULL,
  last_update timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_fk_city_id ON address (city_id);

CREATE TABLE category (
  category_id serial PRIMARY KEY,
  name text NOT NULL,
  last_update timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE actor (
  actor_id serial PRIMARY KEY,
  first_name text NOT NULL,
  last_name text NOT NULL,
  last_update timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_actor_last_name ON actor (last_name);

CREATE TABLE film (
  film_id serial PRIMARY KEY,
  title text NOT NULL,
  description text,
  release_year int,
  language_id int NOT NULL REFERENCES language (language_id),
  rental_duration int NOT NULL DEFAULT 3,
  rental_rate numeric(4, 2) NOT NULL DEFAULT 4.99,
  length int,
  replacement_cost numeric(5, 2) NOT NULL DEFAULT 19.99,
  rating text DEFAULT 'G',
  last_update timestamptz NOT NULL DEFAULT now(),
  fulltext tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || coalesce(description, ''))) STORED
);
CREATE INDEX film_fulltext_idx ON film USING gin (fulltext);
CREATE INDEX idx_title ON film (title);
CREATE INDEX idx_fk_language_id ON film (language_id);

CREATE TABLE film_actor (
  actor_id int NOT NULL REFERENCES actor (actor_id) ON DELETE RESTRICT,
  film_id int NOT NULL REFERENCES film (film_id) ON DELETE RESTRICT,
  last_update timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (actor_id, film_id)
);
CREATE INDEX idx_fk_film_id ON film_actor (film_id);

CREATE TABLE film_category (
  film_id int NOT NULL REFERENCES film (film_id),
  category_id int NOT NULL REFERENCES category (category_id),
  last_update timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (film_id, category_id)
);

-- What changed in the catalogue, written by a trigger on film.
CREATE TABLE film_audit (
  audit_id bigserial PRIMARY KEY,
  film_id int NOT NULL,
  old_rate numeric(4, 2),
  new_rate numeric(4, 2),
  changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION film_rate_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.rental_rate IS DISTINCT FROM OLD.rental_rate THEN
    INSERT INTO film_audit (film_id, old_rate, new_rate) VALUES (NEW.film_id, OLD.rental_rate, NEW.rental_rate);
  END IF;
  RETURN NEW;
END $$;

CREATE TABLE store (
  store_id serial PRIMARY KEY,
  manager_staff_id int,
  address_id int NOT NULL REFERENCES address (address_id),
  last_update timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE staff (
  staff_id serial PRIMARY KEY,
  first_name text NOT NULL,
  last_name text NOT NULL,
  address_id int NOT NULL REFERENCES address (address_id),
  email text,
  store_id int NOT NULL REFERENCES store (store_id),
  active boolean NOT NULL DEFAULT true,
  username text NOT NULL,
  last_update timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE store ADD CONSTRAINT store_manager_staff_id_fkey FOREIGN KEY (manager_staff_id) REFERENCES staff (staff_id);

CREATE TABLE customer (
  customer_id serial PRIMARY KEY,
  store_id int NOT NULL REFERENCES store (store_id),
  first_name text NOT NULL,
  last_name text NOT NULL,
  email text UNIQUE,
  address_id int NOT NULL REFERENCES address (address_id) ON DELETE RESTRICT,
  active boolean NOT NULL DEFAULT true,
  create_date date NOT NULL DEFAULT current_date,
  last_update timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_last_name ON customer (last_name);
CREATE INDEX idx_fk_store_id ON customer (store_id);

CREATE TABLE inventory (
  inventory_id serial PRIMARY KEY,
  film_id int NOT NULL REFERENCES film (film_id),
  store_id int NOT NULL REFERENCES store (store_id),
  last_update timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_store_id_film_id ON inventory (store_id, film_id);

CREATE TABLE rental (
  rental_id serial PRIMARY KEY,
  rental_date timestamptz NOT NULL,
  inventory_id int NOT NULL REFERENCES inventory (inventory_id),
  customer_id int NOT NULL REFERENCES customer (customer_id),
  return_date timestamptz,
  staff_id int NOT NULL REFERENCES staff (staff_id),
  last_update timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX idx_unq_rental_rental_date_inventory_id_customer_id ON rental (rental_date, inventory_id, customer_id);
CREATE INDEX idx_fk_inventory_id ON rental (inventory_id);

CREATE TABLE payment (
  payment_id serial NOT NULL,
  customer_id int NOT NULL REFERENCES customer (customer_id),
  staff_id int NOT NULL REFERENCES staff (staff_id),
  rental_id int REFERENCES rental (rental_id),
  amount numeric(5, 2) NOT NULL,
  payment_date timestamptz NOT NULL,
  PRIMARY KEY (payment_id, payment_date)
) PARTITION BY RANGE (payment_date);
CREATE TABLE payment_p2022_01 PARTITION OF payment FOR VALUES FROM ('2022-01-01') TO ('2022-02-01');
CREATE TABLE payment_p2022_02 PARTITION OF payment FOR VALUES FROM ('2022-02-01') TO ('2022-03-01');
CREATE TABLE payment_p2022_03 PARTITION OF payment FOR VALUES FROM ('2022-03-01') TO ('2022-04-01');
CREATE TABLE payment_default PARTITION OF payment DEFAULT;
CREATE INDEX idx_fk_payment_customer_id ON payment (customer_id);

CREATE TRIGGER last_updated BEFORE UPDATE ON actor FOR EACH ROW EXECUTE FUNCTION last_updated();
CREATE TRIGGER last_updated BEFORE UPDATE ON film FOR EACH ROW EXECUTE FUNCTION last_updated();
CREATE TRIGGER last_updated BEFORE UPDATE ON customer FOR EACH ROW EXECUTE FUNCTION last_updated();
CREATE TRIGGER last_updated BEFORE UPDATE ON rental FOR EACH ROW EXECUTE FUNCTION last_updated();
CREATE TRIGGER film_rate_audit AFTER UPDATE ON film FOR EACH ROW EXECUTE FUNCTION film_rate_audit();

CREATE VIEW film_list AS
  SELECT f.film_id AS fid, f.title, c.name AS category, f.rental_rate AS price, f.length, f.rating
    FROM film f
    LEFT JOIN film_category fc ON fc.film_id = f.film_id
    LEFT JOIN category c ON c.category_id = fc.category_id;

CREATE VIEW customer_list AS
  SELECT cu.customer_id AS id, cu.first_name || ' ' || cu.last_name AS name, a.address, a.phone, city.city, country.country
    FROM customer cu
    JOIN address a ON a.address_id = cu.address_id
    JOIN city ON city.city_id = a.city_id
    JOIN country ON country.country_id = city.country_id;

-- Data.
INSERT INTO language (name) SELECT unnest(ARRAY['English', 'Italian', 'Japanese', 'Mandarin', 'French', 'German']);
INSERT INTO country (country) SELECT 'Country ' || g FROM generate_series(1, 40) g;
INSERT INTO city (city, country_id) SELECT 'City ' || g, 1 + g % 40 FROM generate_series(1, 200) g;
INSERT INTO address (address, district, city_id, postal_code, phone)
  SELECT g || ' Main Street', 'District ' || (g % 20), 1 + g % 200, lpad(g::text, 5, '0'), '555-' || g
    FROM generate_series(1, 700) g;
INSERT INTO category (name) SELECT 'Category ' || g FROM generate_series(1, 16) g;
INSERT INTO actor (first_name, last_name) SELECT 'First' || g, 'Last' || (g % 120) FROM generate_series(1, 200) g;
INSERT INTO film (title, description, release_year, language_id, length, rating)
  SELECT 'Film ' || g, 'A story number ' || g, 2000 + g % 20, 1 + g % 6, 60 + g % 120,
         (ARRAY['G', 'PG', 'PG-13', 'R'])[1 + g % 4]
    FROM generate_series(1, 1000) g;
INSERT INTO film_actor (actor_id, film_id)
  SELECT DISTINCT 1 + (g * 7) % 200, 1 + g % 1000 FROM generate_series(1, 5000) g;
INSERT INTO film_category (film_id, category_id) SELECT g, 1 + g % 16 FROM generate_series(1, 1000) g;
INSERT INTO store (address_id) VALUES (1), (2);
INSERT INTO staff (first_name, last_name, address_id, email, store_id, username)
  VALUES ('Mike', 'Hillyer', 3, 'mike@example.com', 1, 'mike'), ('Jon', 'Stephens', 4, 'jon@example.com', 2, 'jon');
UPDATE store SET manager_staff_id = store_id;
INSERT INTO customer (store_id, first_name, last_name, email, address_id)
  SELECT 1 + g % 2, 'Customer' || g, 'Family' || (g % 150), 'customer' || g || '@example.com', 5 + g % 690
    FROM generate_series(1, 600) g;
INSERT INTO inventory (film_id, store_id) SELECT 1 + g % 1000, 1 + g % 2 FROM generate_series(1, 3000) g;
INSERT INTO rental (rental_date, inventory_id, customer_id, return_date, staff_id)
  SELECT timestamptz '2022-01-01' + g * interval '17 minutes', 1 + g % 3000, 1 + g % 600,
         timestamptz '2022-01-03' + g * interval '17 minutes', 1 + g % 2
    FROM generate_series(1, 6000) g;
INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
  SELECT r.customer_id, r.staff_id, r.rental_id, 0.99 + (r.rental_id % 5), r.rental_date
    FROM rental r;
