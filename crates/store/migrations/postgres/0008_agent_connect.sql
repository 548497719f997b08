-- What an agent says of itself when it connects (seed 003), and whether its first connection
-- waits for the owner's confirmation.
ALTER TABLE agents ADD COLUMN agent_type TEXT;
ALTER TABLE agents ADD COLUMN platform TEXT;
ALTER TABLE agents ADD COLUMN capabilities TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agents ADD COLUMN connected_at TEXT;
ALTER TABLE agents ADD COLUMN requires_confirmation BOOLEAN NOT NULL DEFAULT FALSE;
