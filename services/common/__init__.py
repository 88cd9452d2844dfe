"""Transport plumbing shared by every service: config, errors, server bootstrap, channels, logs, metrics."""
