"""Pure model of backdoor removal: configuration, pruning schedule, triggers, report (numpy only)."""
