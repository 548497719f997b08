-- When each service first became active: provisioning estimates come from this history.
ALTER TABLE services ADD COLUMN activated_at TEXT;
