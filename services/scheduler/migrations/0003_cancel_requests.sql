-- CancelAgent on a replica that does not run the agent: it records the request here, and the replica
-- holding the agent's lease (which polls for requests on its own agents) cancels the run.
ALTER TABLE agents ADD COLUMN cancel_reason TEXT;
CREATE INDEX agents_cancel_requested ON agents (owner) WHERE cancel_reason IS NOT NULL AND state IN (1, 2);
