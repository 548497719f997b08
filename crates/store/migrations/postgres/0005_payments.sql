-- Card (Stripe Checkout) and MPP payments of orders and credit top-ups, and the webhook events
-- already handled. The unique indexes are the last line of defence against a double charge:
-- one payment per order, one payment per MPP challenge, one handling per webhook event.
CREATE TABLE payments (
    id                TEXT PRIMARY KEY,
    account_id        TEXT REFERENCES accounts(id),
    order_id          TEXT REFERENCES orders(id),
    purpose           TEXT NOT NULL CHECK (purpose IN ('order', 'top_up')),
    rail              TEXT NOT NULL CHECK (rail IN ('card', 'mpp')),
    amount_minor      BIGINT NOT NULL CHECK (amount_minor > 0),
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'canceled', 'refunded')),
    session_id        TEXT UNIQUE,
    checkout_url      TEXT,
    payment_reference TEXT,
    challenge_id      TEXT UNIQUE,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX payments_one_per_order ON payments(order_id) WHERE order_id IS NOT NULL;
CREATE INDEX payments_by_account ON payments(account_id, id);

CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    received_at TEXT NOT NULL
);
