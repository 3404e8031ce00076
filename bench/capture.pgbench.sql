-- The SQL of one captured purchase, exactly as the service sends it (CAPTURE_ONE_PG in
-- app/sales/repository/capture.py), for pgbench: the customer upsert with RETURNING feeding the
-- purchase insert, one statement that commits on its own. Emails come from the same pool of
-- 10,000 as the wrk run (stored lower-cased, as the service stores them); the timestamps are
-- taken in SQL.
-- Run with -M prepared: asyncpg also uses prepared statements.
\set n random(1, 10000)
\set quantity random(1, 5)
\set cents random(0, 19999)
\set total_cents :cents * :quantity
WITH upserted AS (INSERT INTO customer AS c (email, name, created_at, updated_at) VALUES (('customer.' || :n || '@pgbench.example.com')::varchar, ('Tim ' || :n)::varchar, now()::timestamptz, now()::timestamptz) ON CONFLICT (email) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at RETURNING c.id, c.email, c.name, c.created_at, c.updated_at, c.xmax = 0 AS created), inserted AS (INSERT INTO purchase (customer_id, item, quantity, unit_price, currency, total, purchased_at) SELECT id, 'book'::varchar, (:quantity)::integer, (:cents / 100.0)::numeric, 'EUR'::varchar, (:total_cents / 100.0)::numeric, now()::timestamptz FROM upserted RETURNING id, total) SELECT upserted.*, inserted.id AS purchase_id, inserted.total FROM upserted, inserted;
