-- Schema 2, as the SQLite journal's (issue 15): every list filter has an index in the listing's order
-- (newest first by creation time, then id), labels get a table of their own for keyset pages by label,
-- finished agents are found by finish time for retention, and expired ids leave a tombstone.
DROP INDEX agents_by_state;
DROP INDEX agents_by_template;
CREATE INDEX agents_by_state_time ON agents (state, create_us, id);
CREATE INDEX agents_by_template_time ON agents (template_name, create_us, id);
CREATE INDEX agents_by_template_state_time ON agents (template_name, state, create_us, id);
CREATE INDEX agents_by_finish ON agents (finish_us) WHERE finish_us IS NOT NULL;
CREATE TABLE agent_labels (
    id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    create_us BIGINT NOT NULL,
    PRIMARY KEY (id, key)
);
CREATE INDEX agent_labels_by_pair ON agent_labels (key, value, create_us, id);
INSERT INTO agent_labels (id, key, value, create_us)
SELECT a.id, l.key, l.value, a.create_us FROM agents a, jsonb_each_text(a.labels) AS l;
CREATE TABLE expired_agents (id TEXT PRIMARY KEY, expired_us BIGINT NOT NULL);
CREATE INDEX expired_agents_by_time ON expired_agents (expired_us);
