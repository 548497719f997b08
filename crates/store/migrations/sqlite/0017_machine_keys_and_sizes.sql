-- The machine's SSH host public key (OpenSSH format), handed to clients so they can pin it.
ALTER TABLE services ADD COLUMN host_public_key TEXT;
-- The resources the product gives the machine (JSON: vcpus, memory_mib, disk_gib,
-- max_processes); NULL for services ordered before sizes were recorded.
ALTER TABLE services ADD COLUMN machine_size TEXT;
-- Whether the order bought backups: a provisioner that can keeps scheduled snapshots.
ALTER TABLE services ADD COLUMN backups_enabled INTEGER NOT NULL DEFAULT 0;
