-- Approval tiers are numbers, as seed 003 writes them (1 is the account's owner). Rules and
-- approvals made when tiers were labels ("owner", or any other) become tier 1.
UPDATE rules SET params = jsonb_set(params::jsonb, '{tier}', '1')::text
 WHERE kind = 'escalate_above' AND jsonb_typeof(params::jsonb -> 'tier') = 'string';
UPDATE approvals SET tier = '1' WHERE tier !~ '^[1-9]$';
