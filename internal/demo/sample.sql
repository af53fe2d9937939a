-- Sample data for the demo: a small shop plus one table holding every type
-- the tap maps (README, "Types").
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA shop;
CREATE TYPE shop.status AS ENUM ('new', 'paid', 'shipped');
CREATE DOMAIN shop.positive_amount AS numeric(12,2) CHECK (VALUE >= 0);

CREATE TABLE shop.customers (
    id         bigint PRIMARY KEY,
    email      citext NOT NULL,
    name       text,
    tags       text[],
    prefs      hstore,
    created_at timestamptz NOT NULL
);
INSERT INTO shop.customers
SELECT g, 'user' || g || '@example.com', 'Customer ' || g,
       ARRAY['tag' || (g % 3), 'tag' || (g % 5)],
       hstore(ARRAY['lang', 'tz'], ARRAY[CASE WHEN g % 2 = 0 THEN 'en' ELSE 'fr' END, NULL]),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour 1.5 seconds'
FROM generate_series(1, 2500) g;

CREATE TABLE shop.orders (
    customer_id bigint NOT NULL REFERENCES shop.customers,
    order_no    integer NOT NULL,
    status      shop.status NOT NULL,
    total       shop.positive_amount,
    items       jsonb,
    ordered_on  date,
    PRIMARY KEY (customer_id, order_no)
) PARTITION BY HASH (customer_id);
CREATE TABLE shop.orders_p0 PARTITION OF shop.orders FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE shop.orders_p1 PARTITION OF shop.orders FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO shop.orders
SELECT c, n, (ARRAY['new', 'paid', 'shipped'])[1 + (c + n) % 3]::shop.status,
       round((c * 7.31 + n)::numeric, 2),
       jsonb_build_array(jsonb_build_object('sku', 'SKU-' || c, 'qty', n)),
       date '2024-01-01' + (c + n) % 365
FROM generate_series(1, 2500) c, generate_series(1, 3) n;

CREATE TABLE shop.page_views (path text, viewed_at timestamp);  -- no primary key
INSERT INTO shop.page_views SELECT '/product/' || g, timestamp '2024-03-01' + g * interval '1 minute' FROM generate_series(1, 500) g;

CREATE VIEW shop.paid_orders AS SELECT customer_id, order_no, total FROM shop.orders WHERE status = 'paid';
CREATE MATERIALIZED VIEW shop.daily_totals AS SELECT ordered_on, sum(total) AS total FROM shop.orders GROUP BY ordered_on;

CREATE TABLE public.every_type (
    id integer PRIMARY KEY,
    c_smallint smallint, c_bigint bigint, c_numeric numeric, c_numeric_12_2 numeric(12,2),
    c_real real, c_double double precision, c_bool boolean, c_bit1 bit(1), c_varbit varbit(8),
    c_varchar varchar(20), c_char char(4), c_uuid uuid, c_status shop.status,
    c_json json, c_jsonb jsonb, c_hstore hstore,
    c_date date, c_timestamp timestamp, c_timestamptz timestamptz, c_time time, c_timetz timetz, c_interval interval,
    c_bytea bytea, c_inet inet, c_cidr cidr, c_macaddr macaddr, c_money money, c_xml xml,
    c_point point, c_box box, c_polygon polygon, c_circle circle, c_int4range int4range, c_tsvector tsvector,
    c_oid oid, c_pg_lsn pg_lsn, c_int_2d integer[], c_text_array text[], c_timestamptz_array timestamptz[]
);
INSERT INTO public.every_type VALUES
 (1, -32768, 9223372036854775807, 12345678901234567890.123456789012345678, 1234567890.10,
  3.4028235e+38, 0.1, true, B'1', B'101', 'varchar', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'paid',
  '{"a": [1, 2.50]}', '{"b": {"c": null}}', '"k"=>"v", "n"=>NULL',
  '2024-02-29', '2024-06-01 12:34:56.5', '2024-06-01 12:34:56.123456+05:30', '23:59:59.999999', '12:00:00+02', '1 year 2 mons 3 days 04:05:06.789',
  '\xdeadbeef', '192.168.1.5/24', '10.0.0.0/8', '08:00:2b:01:02:03', 1234.56, '<a>x &amp; y</a>',
  '(1.5,-2)', '(1,1),(0,0)', '((0,0),(1,1),(1,0))', '<(0,0),2>', '[1,10)', 'a fat rat',
  4294967295, '16/B374D848', '{{1,2},{3,NULL}}', '{"a b","c\"d",NULL}', '{"2024-01-01 00:00:00+00",infinity}'),
 (2, NULL, NULL, 'NaN', NULL, '-Infinity', 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  'infinity', '-infinity', '0044-03-15 10:00:00+00 BC', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, 'empty', NULL, NULL, NULL, '{}', '{}', NULL);
ANALYZE;
