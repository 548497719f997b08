-- Approval tiers are numbers, as seed 003 writes them (1 is the account's owner). Rules and
-- approvals made when tiers were labels ("owner", or any other) become tier 1.
UPDATE rules SET params = json_set(params, '$.tier', 1)
 WHERE kind = 'escalate_above' AND json_type(params, '$.tier') = 'text';
UPDATE approvals SET tier = '1' WHERE tier NOT GLOB '[1-9]';
