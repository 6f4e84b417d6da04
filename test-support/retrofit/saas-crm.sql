-- A SaaS CRM of one company: accounts, contacts, deals, notes; JSONB custom fields,
-- partial and full-text indexes, a polymorphic note subject, a currency reference table.

CREATE TABLE currency (code char(3) PRIMARY KEY, name text NOT NULL);

CREATE TABLE app_user (
  id bigserial PRIMARY KEY,
  email text NOT NULL UNIQUE,
  full_name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE account (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  domain text,
  owner_id bigint REFERENCES app_user (id) ON DELETE SET NULL,
  custom_fields jsonb NOT NULL DEFAULT '{}',
  archived_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX account_domain_live ON account (lower(domain)) WHERE archived_at IS NULL;
CREATE INDEX account_custom_fields ON account USING gin (custom_fields jsonb_path_ops);

CREATE TABLE contact (
  id bigserial PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES account (id) ON DELETE CASCADE,
  first_name text,
  last_name text NOT NULL,
  email text,
  phone text,
  custom_fields jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contact_account ON contact (account_id);
CREATE INDEX contact_email ON contact (lower(email));

CREATE TABLE pipeline_stage (
  id serial PRIMARY KEY,
  name text NOT NULL UNIQUE,
  position int NOT NULL
);

CREATE TABLE deal (
  id bigserial PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES account (id),
  contact_id bigint REFERENCES contact (id) ON DELETE SET NULL,
  stage_id int NOT NULL REFERENCES pipeline_stage (id),
  title text NOT NULL,
  amount numeric(12, 2),
  currency char(3) NOT NULL REFERENCES currency (code),
  closed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deal_open_by_stage ON deal (stage_id, created_at) WHERE closed_at IS NULL;
CREATE INDEX deal_account ON deal (account_id);

CREATE TABLE note (
  id bigserial PRIMARY KEY,
  subject_type text NOT NULL CHECK (subject_type IN ('account', 'contact', 'deal')),
  subject_id bigint NOT NULL,
  author_id bigint REFERENCES app_user (id),
  body text NOT NULL,
  search tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX note_search ON note USING gin (search);
CREATE INDEX note_subject ON note (subject_type, subject_id);

CREATE TABLE tag (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE deal_tag (
  deal_id bigint NOT NULL REFERENCES deal (id) ON DELETE CASCADE,
  tag_id int NOT NULL REFERENCES tag (id) ON DELETE CASCADE,
  PRIMARY KEY (deal_id, tag_id)
);

INSERT INTO currency VALUES ('EUR', 'Euro'), ('USD', 'US dollar'), ('GBP', 'Pound sterling');
INSERT INTO app_user (email, full_name) SELECT 'user' || g || '@crm.example', 'User ' || g FROM generate_series(1, 20) g;
INSERT INTO account (name, domain, owner_id, custom_fields)
  SELECT 'Account ' || g, 'account' || g || '.example', 1 + g % 20, jsonb_build_object('tier', g % 3, 'region', 'r' || g % 5)
    FROM generate_series(1, 800) g;
INSERT INTO contact (account_id, first_name, last_name, email, custom_fields)
  SELECT 1 + g % 800, 'First' || g, 'Last' || g, 'contact' || g || '@mail.example', jsonb_build_object('vip', g % 10 = 0)
    FROM generate_series(1, 3000) g;
INSERT INTO pipeline_stage (name, position) VALUES ('lead', 1), ('qualified', 2), ('proposal', 3), ('won', 4), ('lost', 5);
INSERT INTO deal (account_id, contact_id, stage_id, title, amount, currency, closed_at)
  SELECT 1 + g % 800, 1 + g % 3000, 1 + g % 5, 'Deal ' || g, g * 10, (ARRAY['EUR', 'USD', 'GBP'])[1 + g % 3],
         CASE WHEN g % 5 >= 3 THEN now() END
    FROM generate_series(1, 2000) g;
INSERT INTO note (subject_type, subject_id, author_id, body)
  SELECT (ARRAY['account', 'contact', 'deal'])[1 + g % 3], 1 + g % 800, 1 + g % 20, 'Called about renewal number ' || g
    FROM generate_series(1, 3000) g;
INSERT INTO tag (name) SELECT 'tag' || g FROM generate_series(1, 10) g;
INSERT INTO deal_tag SELECT DISTINCT 1 + g % 2000, 1 + g % 10 FROM generate_series(1, 3000) g;
