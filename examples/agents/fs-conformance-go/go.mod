module agentfactory.local/examples/fs-conformance-go

go 1.24
