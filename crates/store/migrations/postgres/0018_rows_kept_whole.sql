-- An order, an idempotency key's recorded answer and an event are each a few kilobytes of JSON
-- text (an order's result alone about two). PostgreSQL compresses every row over about 2 KB
-- before writing it, and decompresses it on every read: in a profile of credit orders that
-- compression (pglz) was 11% of PostgreSQL's CPU, and these rows are written once and read
-- often. Rows of these tables up to a page (8 KB) are now stored as they are; larger ones are
-- still compressed and moved out of line as before. Rows written earlier stay as they were.
ALTER TABLE orders SET (toast_tuple_target = 8160);
ALTER TABLE idempotency_keys SET (toast_tuple_target = 8160);
ALTER TABLE events SET (toast_tuple_target = 8160);
