module agentfactory.local/examples/kv-counter

go 1.24
