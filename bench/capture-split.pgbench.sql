-- One captured purchase as separate statements in a transaction, as the issue words it and as
-- the service sent it before it fused them into one (bench/capture.pgbench.sql): the customer
-- upsert with RETURNING, the purchase insert with RETURNING, COMMIT. Four round trips.
-- Emails come from the same pool of 10,000 as the wrk run (stored lower-cased, as the service
-- stores them), the casts are the ones SQLAlchemy writes, and the timestamps are taken in SQL.
-- Run with -M prepared: asyncpg also uses prepared statements.
\set n random(1, 10000)
\set quantity random(1, 5)
\set cents random(0, 19999)
\set total_cents :cents * :quantity
BEGIN;
INSERT INTO customer (email, name, created_at, updated_at) VALUES (('customer.' || :n || '@pgbench.example.com')::VARCHAR, ('Tim ' || :n)::VARCHAR, now()::TIMESTAMP WITH TIME ZONE, now()::TIMESTAMP WITH TIME ZONE) ON CONFLICT (email) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at RETURNING customer.id, customer.email, customer.name, customer.created_at, customer.updated_at, customer.xmax = 0 AS created \gset customer_
INSERT INTO purchase (customer_id, item, quantity, unit_price, currency, total, purchased_at) VALUES ((:customer_id)::BIGINT, 'book'::VARCHAR, (:quantity)::INTEGER, (:cents / 100.0)::NUMERIC(12, 2), 'EUR'::VARCHAR, (:total_cents / 100.0)::NUMERIC(16, 2), now()::TIMESTAMP WITH TIME ZONE) RETURNING purchase.id, purchase.total;
COMMIT;
