"""afctl: the Agent Factory command line and the small Python client library it is built on."""
